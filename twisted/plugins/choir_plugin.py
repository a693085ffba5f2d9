from twisted.application.service import ServiceMaker

choir = ServiceMaker(
    "choir",
    "choir_twisted.service",
    "Online choir rehearsal daemon, wire-compatible with online-choir 1.1.3.",
    "choir",
)
