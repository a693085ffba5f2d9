"""The choir daemon: Twisted protocols and services that drive choir_protocol."""
