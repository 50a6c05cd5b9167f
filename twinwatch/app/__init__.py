"""The application shell: the CLI, the demo, the service harness, the simulator, the analysts'
toolkit and the NAB harness. It sits on top of every other layer and nothing imports it."""
