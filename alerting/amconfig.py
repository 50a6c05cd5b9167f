"""Generate Alertmanager's configuration (alertmanager.yml) from twinwatch's config.

    amconfig(config) -> dict        render(config) -> YAML text        (pure)

What it encodes (see docs/alerting.md):

* routing tree: the root route (``routing.receiver``, grouped by ``routing.group_by``, default
  alertname/site/asset) with one child per ``routing.routes`` entry, matching ``domain`` and
  ``severity``; under each, one child per alert rule with ``renotify_s`` (its own
  ``repeat_interval``), so a rule's minimum re-notify interval holds whatever receiver it takes;
* inhibition: a stale sensor (rule ``stale``) inhibits the other alerts of that sensor; a site
  power outage (rule ``routing.power_outage_rule``) inhibits the energy alerts of that site;
  ``severe`` inhibits the lower severities of the same alert;
* receivers: webhook, email (SMTP), Slack-compatible incoming webhook, each with templates that
  carry the summary, description (value and unit), severity in both languages, runbook and
  dashboard links.

Alertmanager reads this file itself, so a secret becomes a ``*_file`` reference: it must be a
``{file: ...}`` Secret; an ``{env: ...}`` Secret is a ConfigError (it would have to be written
into the file in clear).
"""

from __future__ import annotations

from typing import Any

import yaml

from twinwatch.config import AlertReceiver, Config, ConfigError, Secret
from twinwatch.schema import SEVERITIES

__all__ = ["amconfig", "render", "TITLE", "TEXT", "HTML"]

# Go templates (Alertmanager's notification data: .Status, .Alerts, .CommonLabels, ...).
TITLE = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}'
    "{{ end }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.site }}/"
    "{{ .CommonLabels.asset }}"
)
TEXT = (
    "{{ range .Alerts }}[{{ .Status }}] {{ .Labels.severity }} ({{ .Annotations.severity_ko }})"
    " {{ .Annotations.summary }}\n{{ .Annotations.description }}\n"
    "{{ if .Annotations.runbook_url }}runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
    "{{ if .Annotations.dashboard_url }}dashboard: {{ .Annotations.dashboard_url }}\n{{ end }}"
    "since {{ .StartsAt }}\n\n{{ end }}"
)
HTML = (
    "{{ range .Alerts }}<p><b>[{{ .Status }}] {{ .Labels.severity }} "
    "({{ .Annotations.severity_ko }})</b> {{ .Annotations.summary }}<br>"
    "{{ .Annotations.description }}<br>"
    '{{ if .Annotations.runbook_url }}<a href="{{ .Annotations.runbook_url }}">runbook</a> '
    '{{ end }}{{ if .Annotations.dashboard_url }}<a href="{{ .Annotations.dashboard_url }}">'
    "dashboard</a>{{ end }}</p>{{ end }}"
)

_VALUE_RULES_EXCLUDE = "stale"


def _duration(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms" if seconds < 1 or seconds % 1 else f"{int(seconds)}s"


def _file(secret: Secret | None, key: str) -> str | None:
    if secret is None:
        return None
    if secret.file is None:
        raise ConfigError(
            f"{key}: Alertmanager reads its own config file, so this secret must "
            f"be a {{file: ...}} reference, not {{env: {secret.env}}}"
        )
    return secret.file


def _receiver(r: AlertReceiver) -> dict[str, Any]:
    key = f"services.alertmanager.routing.receivers[{r.name}]"
    if r.type == "webhook":
        if not r.url:
            raise ConfigError(f"{key}.url: a webhook receiver needs a url")
        return {
            "name": r.name,
            "webhook_configs": [{"url": r.url, "send_resolved": r.send_resolved, "max_alerts": 0}],
        }
    if r.type == "email":
        if not r.to:
            raise ConfigError(f"{key}.to: an email receiver needs an address")
        conf: dict[str, Any] = {
            "to": r.to,
            "from": r.smtp_from,
            "smarthost": r.smtp_smarthost,
            "require_tls": r.smtp_require_tls,
            "send_resolved": r.send_resolved,
            "headers": {"Subject": TITLE},
            "html": HTML,
            "text": TEXT,
        }
        if r.smtp_username:
            conf["auth_username"] = r.smtp_username
            conf["auth_password_file"] = _file(r.smtp_password, f"{key}.smtp_password")
        return {"name": r.name, "email_configs": [conf]}
    if r.url_secret is None:
        raise ConfigError(
            f"{key}.url_secret: a slack receiver needs its webhook URL as {{file: ...}}"
        )
    conf = {
        "api_url_file": _file(r.url_secret, f"{key}.url_secret"),
        "title": TITLE,
        "text": TEXT,
        "send_resolved": r.send_resolved,
    }
    if r.channel:
        conf["channel"] = r.channel
    return {"name": r.name, "slack_configs": [conf]}


def amconfig(config: Config) -> dict[str, Any]:
    routing = config.services.alertmanager.routing
    receivers = [_receiver(r) for r in routing.receivers] or [{"name": routing.receiver}]
    names = {r["name"] for r in receivers}
    if len(names) != len(receivers):
        raise ConfigError("services.alertmanager.routing.receivers: duplicate receiver name")
    for i, wanted in enumerate([routing.receiver, *(x.receiver for x in routing.routes)]):
        if wanted not in names:
            where = "receiver" if i == 0 else f"routes[{i - 1}].receiver"
            raise ConfigError(
                f"services.alertmanager.routing.{where}: no receiver named {wanted!r}"
            )
    renotify = [
        (rule.detector, rule.domain, rule.renotify_s)
        for rule in config.alert_rules
        if rule.renotify_s is not None
    ]

    def per_rule(domain: str | None) -> list[dict[str, Any]]:
        return [
            {
                "matchers": [f'rule="{name}"'] + ([f'domain="{d}"'] if d else []),
                "repeat_interval": _duration(s),
            }
            for name, d, s in renotify
            if domain is None or d in (None, domain)
        ]

    routes = []
    for r in routing.routes:
        matchers = []
        if r.domain:
            matchers.append(f'domain="{r.domain}"')
        if r.severities:
            matchers.append(f'severity=~"{"|".join(r.severities)}"')
        route: dict[str, Any] = {"receiver": r.receiver, "matchers": matchers}
        if r.continue_:
            route["continue"] = True
        if renotify:
            route["routes"] = per_rule(r.domain)
        routes.append(route)
    routes += per_rule(None)  # alerts no domain route took still get their rule's interval
    lower = "|".join(SEVERITIES[:-1])
    return {
        "route": {
            "receiver": routing.receiver,
            "group_by": list(routing.group_by),
            "group_wait": _duration(routing.group_wait_s),
            "group_interval": _duration(routing.group_interval_s),
            "repeat_interval": _duration(routing.repeat_interval_s),
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": ['rule="stale"'],
                "target_matchers": [f'rule!="{_VALUE_RULES_EXCLUDE}"'],
                "equal": ["domain", "site", "asset", "sensor"],
            },
            {
                "source_matchers": [f'rule="{routing.power_outage_rule}"'],
                "target_matchers": ['domain="energy"', f'rule!="{routing.power_outage_rule}"'],
                "equal": ["site"],
            },
            {
                "source_matchers": ['severity="severe"'],
                "target_matchers": [f'severity=~"{lower}"'],
                "equal": ["alertname", "domain", "site", "asset", "sensor"],
            },
        ],
        "receivers": receivers,
    }


def render(config: Config) -> str:
    head = "# Generated by `twinwatch alerts config` from the twinwatch config; do not edit.\n"
    return head + yaml.safe_dump(amconfig(config), sort_keys=False, allow_unicode=True, width=200)
