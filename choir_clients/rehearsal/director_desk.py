"""The director's view of the mixing desk during a session: how many singers are in the
mix, and the remembered gains applied to singers as they appear."""
from .desk_client import DeskClient, DeskError, connect_desk, format_gain


class DeskWatcher:
    """The session's view of the mixing desk: counts the singers in the mix (asks every
    couple of seconds) and applies the remembered gains to singers as they appear."""

    def __init__(self, reactor, host, port, remembered, note, interval=2.0, fast_interval=0.25,
                 fast_period=6.0):
        self.reactor = reactor
        self.host, self.port = host, port
        self.remembered = remembered
        self.note = note
        self.interval, self.fast_interval, self.fast_period = interval, fast_interval, fast_period
        self.client: DeskClient | None = None
        self.unreachable = None  # the note, held until the mix comes (not for a wrong port)
        self.singers = None  # how many in the mix, None if unknown
        self.handled = set()  # singer ids whose remembered gain was looked at
        self.applied = []  # (Singer, gain) applied
        self._timer = None
        self._started = None
        self._stopped = False

    async def connect(self) -> bool:
        if self.port is None:
            return False
        try:
            self.client = await connect_desk(self.reactor, self.host, self.port)
        except DeskError as e:
            self.unreachable = f"Note: {e}. Singers will not be counted, and remembered levels not applied."
            return False
        return True

    async def prepare(self):
        """Before the session: remembered gains to every singer already connected."""
        if self.client is None:
            return
        try:
            if self._apply(await self.client.list(everyone=True)):
                await self.client.list(everyone=False)  # answered after the gains are set
        except DeskError as e:
            self._lost(e)
        if self.remembered.problem:
            self.note(f"Note: remembered levels are not applied: {self.remembered.problem}")

    def start(self):
        self._started = self.reactor.seconds()
        if self.client is not None:
            self._timer = self.reactor.callLater(0, self._poll)

    def _poll(self):
        self._timer = None
        if self.client is None or self._stopped:
            return
        d = self.client.list(everyone=False)  # the singers in the mix, on both servers
        d.addCallback(self._listed)
        d.addErrback(lambda f: self._lost(f.value))

    def _apply(self, singers) -> bool:
        changes = []
        for singer in singers:
            if singer.is_monitor or singer.id in self.handled:
                continue
            self.handled.add(singer.id)
            gain = self.remembered.effective(singer.name, singer.group)
            if gain is not None and abs(gain - singer.gain) > 1e-6:
                self.client.set_gain(singer.id, gain)
                changes.append((singer, gain))
        if changes:
            self.applied += changes
            self.note("Remembered levels: " + ", ".join(
                f"{singer.describe()} {format_gain(gain)}" for singer, gain in changes))
        return bool(changes)

    def _listed(self, singers):
        if self.client is None or self._stopped:
            return
        self.singers = sum(1 for s in singers if not s.is_monitor)
        try:
            self._apply(singers)
        except DeskError as e:
            self._lost(e)
            return
        self._schedule()

    def _schedule(self):
        if self._stopped or self.client is None:
            return
        fast = self.reactor.seconds() - self._started < self.fast_period
        self._timer = self.reactor.callLater(self.fast_interval if fast else self.interval, self._poll)

    def _lost(self, exc):
        if self.client is not None and not self._stopped:
            self.note(f"Note: mixing desk unavailable ({exc}).")
            self.client.close()
            self.client = None
            self.singers = None

    async def stop(self):
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
