"""The web console: server-rendered pages under /console over the same API the CLI uses."""
