"""End-to-end tests: a real dockerd and a real Open vSwitch, no mocks."""
