"""The one security classifier (twinwatch.engine.classify), line by line: sshd, PAM, netfilter,
HTTP, Windows, and attacker-chosen text that must not steer an address into a finding."""

from __future__ import annotations

import pytest

from twinwatch.engine.classify import Classified, classify, valid_ip


@pytest.mark.parametrize(
    "program, message, expected",
    [
        (
            "sshd",
            "Accepted password for fztu from 119.137.62.142 port 49116 ssh2",
            [("sshd", "auth_success", "success", "fztu", "119.137.62.142", None)],
        ),
        (
            "sshd",
            "Failed password for root from 183.62.140.253 port 54836 ssh2",
            [("sshd", "auth_failure", "failure", "root", "183.62.140.253", None)],
        ),
        (  # the same attempt as the "Invalid user" line before it: a failed login
            "sshd",
            "Failed password for invalid user admin from 5.36.59.76 port 42393 ssh2",
            [("sshd", "auth_failure", "failure", "admin", "5.36.59.76", None)],
        ),
        (
            "sshd",
            "Invalid user test9 from 52.80.34.196",
            [("sshd", "invalid_user", "failure", "test9", "52.80.34.196", None)],
        ),
        (  # newer sshd appends the port
            "sshd",
            "Invalid user test9 from 2001:db8::7 port 4242",
            [("sshd", "invalid_user", "failure", "test9", "2001:db8::7", None)],
        ),
        (
            "sshd",
            "Failed publickey for git from 198.51.100.3 port 22 ssh2: RSA SHA256:abc",
            [("sshd", "auth_failure", "failure", "git", "198.51.100.3", None)],
        ),
        (
            "sshd",
            "message repeated 3 times: [ Failed password for root from 192.0.2.1 port 2 ssh2]",
            [("sshd", "auth_failure", "failure", "root", "192.0.2.1", None)] * 3,
        ),
        (  # PAM's copy of sshd's failure: recorded, never counted (kind pam_failure)
            "sshd(pam_unix)",
            "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
            [("sshd", "pam_failure", "failure", None, "218.188.2.4", None)],
        ),
        (
            "sshd",
            "Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]",
            [("sshd", "disconnect", "info", None, "1.2.3.4", None)],
        ),
        (
            "kernel",
            "[UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.7 DST=10.0.0.1 PROTO=UDP SPT=1 DPT=161",
            [("firewall", "fw_deny", "deny", None, "198.51.100.7", 161)],
        ),
        (  # nftables log prefix, any program
            "kernel",
            "nft accept: IN=eth0 OUT= SRC=198.51.100.8 DST=10.0.0.1 PROTO=TCP SPT=1 DPT=443",
            [("firewall", "fw_allow", "allow", None, "198.51.100.8", 443)],
        ),
        (
            "http_access",
            '203.0.113.5 - bob [10/Oct/2000:13:55:36 -0700] "GET /admin HTTP/1.1" 401 2326',
            [("http", "auth_failure", "failure", "bob", "203.0.113.5", None)],
        ),
        (
            "http_access",
            '203.0.113.5 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 404 12 "-" "curl"',
            [("http", "http_4xx", "info", None, "203.0.113.5", None)],
        ),
        (
            "apache",
            "[error] [client 198.51.100.9] user carol: authentication failure for "
            '"/private": Password Mismatch',
            [("http", "auth_failure", "failure", "carol", "198.51.100.9", None)],
        ),
        (
            "nginx",
            '*1 user "dave" was not found in "/etc/nginx/.htpasswd", client: 198.51.100.10, '
            'server: x, request: "GET / HTTP/1.1"',
            [("http", "auth_failure", "failure", "dave", "198.51.100.10", None)],
        ),
        (
            "MSWinEventLog",
            "1\tSecurity\t55\tMon Jan 01 00:00:00 2024\t4625\tMicrosoft-Windows-Security-"
            "Auditing\tN/A\tN/A\tFailure Audit\tDC1\tLogon\t\tAn account failed to log on. "
            "Subject: Account Name: - Account For Which Logon Failed: Account Name: eve "
            "Network Information: Source Network Address: 203.0.113.77",
            [("windows", "auth_failure", "failure", "eve", "203.0.113.77", None)],
        ),
        (
            "winlogbeat",
            "EventID=4624 TargetUserName=frank IpAddress=203.0.113.78 LogonType=10",
            [("windows", "auth_success", "success", "frank", "203.0.113.78", None)],
        ),
        ("ftpd", "connection from 24.54.76.216", [(None, "other", "info", None, None, None)]),
        # a syslog program named apache_access whose line is not an access-log line: no crash
        ("apache_access", "hello", [("http", "other", "info", None, None, None)]),
    ],
)
def test_classify(program, message, expected):
    assert classify(program, message) == [Classified(*e) for e in expected]


def test_apache_error_lines_are_http_errors_by_their_severity():
    msg = "[error] [client 198.51.100.9] Directory index forbidden by rule: /var/www/"
    assert classify("apache", msg, severity=3)[0].kind == "http_error"
    assert classify("apache", msg, severity=5)[0].kind == "other"


@pytest.mark.parametrize(
    "message, user",
    [
        (  # issue #15: a user name that contains a victim's address
            "Failed password for invalid user x from 10.0.0.5 port 22 ssh2 from 203.0.113.9 "
            "port 4242 ssh2",
            "x from 10.0.0.5 port 22 ssh2",
        ),
        ("Invalid user y from 10.0.0.5 from 203.0.113.9 port 4242", "y from 10.0.0.5"),
        (
            "Accepted password for z from 10.0.0.5 from 203.0.113.9 port 1 ssh2",
            "z from 10.0.0.5",
        ),
    ],
)
def test_an_attacker_chosen_user_name_cannot_steer_the_address(message, user):
    (c,) = classify("sshd", message)
    assert c.src_ip == "203.0.113.9" and c.user == user


def test_only_real_addresses_are_kept():
    assert valid_ip("999.1.1.1") is None and valid_ip("host.example") is None
    assert valid_ip("2001:DB8::1") == "2001:db8::1"
    (c,) = classify("sshd", "Failed password for root from not-an-ip port 22 ssh2")
    assert c.kind == "auth_failure" and c.src_ip is None
