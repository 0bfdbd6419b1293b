"""Factories shared by the test suites: API requests that build agents, configurations, tokens."""
