"""The project's shared test bed: real tools (Open vSwitch, namespaces) driven for tests."""
