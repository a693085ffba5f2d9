from twisted.application.service import ServiceMaker

# choir_twisted.startup: the twistd flavour of choir_twisted.service (one-line start errors)
choir = ServiceMaker(
    "choir",
    "choir_twisted.startup",
    "Online choir rehearsal daemon, wire-compatible with online-choir 1.1.3.",
    "choir",
)
