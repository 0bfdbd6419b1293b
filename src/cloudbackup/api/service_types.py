"""The services more than one controller takes, as handler parameter types (the app provides
each by name, ``app.SERVICES``); a service one controller alone takes is named there."""

from __future__ import annotations

from litestar.di import NamedDependency

from cloudbackup.domain.configurations import ConfigurationService
from cloudbackup.domain.event_stream import EventStreamService
from cloudbackup.domain.health import HealthService

Configurations = NamedDependency[ConfigurationService]  # CF1-CF5, and A8
Events = NamedDependency[EventStreamService]  # EV1-EV8, and A6
Health = NamedDependency[HealthService]  # H1-H3, and A6
