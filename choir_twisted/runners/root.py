"""The resource tree of the runner port: /socket.io/ to the notification hub, /api/v1/media
to the media API, the admin's requests under /api/v1/runners to the admin API, every other
path to the runner API's Klein app (Klein apps see the path whole). What Klein cannot route
is a 400 problem here."""
from twisted.web import resource

from choir_protocol.runners.jobs import JobError

from .admin_api import is_admin_route
from .answers import bad_request, problem


class Root(resource.Resource):
    def __init__(self, app_resource, socketio_resource, media_resource=None,
                 admin_resource=None):
        super().__init__()
        self._app = app_resource
        self._socketio = socketio_resource
        self._media = media_resource
        self._admin = admin_resource

    def getChildWithDefault(self, name, request):
        if name == b"socket.io":
            return self._socketio
        request.postpath.insert(0, request.prepath.pop())
        unroutable = _unroutable(request)
        if unroutable is not None:
            return _Refusal(bad_request(unroutable))
        if self._media is not None and request.postpath[:3] == [b"api", b"v1", b"media"]:
            return self._media
        if self._admin is not None and is_admin_route(request.method, request.postpath):
            return self._admin
        return self._app

    def render(self, request):
        unroutable = _unroutable(request)
        if unroutable is not None:
            return problem(request, bad_request(unroutable))
        return self._app.render(request)


def _unroutable(request) -> str | None:
    """Why Klein cannot route ``request``, or None. Klein logs a traceback for a path or a
    Host that is not UTF-8, and werkzeug raises (a 500) for a host name IDNA cannot encode
    (a label over 63 characters, an empty one): a client's junk, answered as a 400 here."""
    host = request.getRequestHostname()
    port = getattr(request.getHost(), "port", 0)
    if port and (request.isSecure(), port) not in ((True, 443), (False, 80)):
        host += b":%d" % port  # as Klein gives it to werkzeug
    try:
        b"/".join(request.prepath + request.postpath).decode("utf-8")
    except UnicodeDecodeError:
        return "the path is not UTF-8"
    try:
        host.decode("utf-8").lower().encode("idna")
    except UnicodeError:
        return "the Host header is not a host name"
    return None


class _Refusal(resource.Resource):
    isLeaf = True

    def __init__(self, error: JobError):
        super().__init__()
        self.error = error

    def render(self, request):
        return problem(request, self.error)
