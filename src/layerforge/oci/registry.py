"""A small OCI distribution client on :mod:`http.client` (no third-party HTTP stack).

- HTTPS, or plain HTTP for registries marked insecure and for loopback hosts without a TLS
  context of their own (``tls``: the CAs of a ``certs.d/<host:port>/`` entry).
- Through a forward proxy when ``proxy`` names one for the URL: HTTPS in a ``CONNECT``
  tunnel (TLS stays end to end, checked against the registry's trust), plain HTTP as
  absolute-URI requests. Token requests take the same proxy as the realm's URL would. A proxy
  that refuses or cannot be reached is a :class:`RegistryError` naming the proxy.
- Auth: on a 401 it reads the ``WWW-Authenticate`` challenge; ``Bearer`` fetches a token
  from the realm (``service``, ``scope``; ``token`` or ``access_token``; Basic credentials
  or an identity token), ``Basic`` sends the credentials. A 401 later in a long push (an
  expired token) fetches a new token and repeats the request once.
- Bodies are bytes or a file streamed from disk in 1 MiB chunks; downloads stream into a
  writer. Nothing holds a whole blob in memory.
- 429 and 5xx are retried with ``Retry-After`` or exponential backoff. Redirects are
  followed; ``Authorization`` is dropped when the host changes.
- Connection faults (reset, broken pipe, closed without an answer, a body shorter than
  announced) are retried with backoff, from the original URL, unless the caller says the
  exchange must not be repeated (``retry_faults=False``: an upload session's PATCH/PUT,
  which :mod:`layerforge.oci.push` resumes itself). A download into a :class:`Sink` resumes
  with ``Range: bytes=<held>-`` (206), or starts over cleanly when the server answers 200
  or an unexpected range. Once a registry has answered, a fault is a
  :class:`~layerforge.errors.ConnectionFault` that says what broke, never "unreachable".
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from layerforge.errors import ConnectionFault, RegistryError
from layerforge.oci.auth import Challenge, Credential, parse_challenge
from layerforge.oci.proxy import ProxyConfig, ProxyURL
from layerforge.oci.reference import is_loopback
from layerforge.oci.transfer import CHUNK, Sink, describe_fault, stream_into

RETRIES = 5
FAULT_RETRIES = 6  # attempts of one exchange when connections break (3 before any answer)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Body:
    """A request body that can be sent again (bytes, or a whole file read from disk)."""

    data: bytes = b""
    path: Path | None = None
    progress: Callable[[int], None] | None = None
    offset: int = 0  # send from this byte on (a resumed upload)
    end: int | None = None  # and up to this byte, exclusive (one chunk); None: to the end

    @property
    def size(self) -> int:
        """The whole body's size (``offset`` not taken off)."""
        return self.path.stat().st_size if self.path is not None else len(self.data)

    def stop(self) -> int:
        """Where the bytes sent end (exclusive)."""
        return self.size if self.end is None else min(self.end, self.size)


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    data: bytes
    url: str

    def header(self, name: str) -> str:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        return lowered.get(name.lower(), "")

    def json(self) -> dict[str, object]:
        value = json.loads(self.data or b"{}")
        return value if isinstance(value, dict) else {}


class _Progress:
    """A file wrapper that reports bytes read (http.client reads it in blocksize chunks)."""

    def __init__(
        self, fh: IO[bytes], progress: Callable[[int], None] | None, done: int, left: int
    ) -> None:
        self._fh = fh
        self._progress = progress
        self._done = done
        self._left = left  # bytes still to give (a chunk stops before the file ends)

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._fh.read(size) if size else b""
        self._left -= len(data)
        self._done += len(data)
        if self._progress is not None and data:
            self._progress(self._done)
        return data


@dataclass
class Client:
    """Talks to one registry host. Thread-safe: each thread takes its own connection."""

    host: str  # host[:port] (the API endpoint)
    credential: Credential | None = None
    insecure: bool = False
    # trust for HTTPS: None is the system's CAs; a context of its own (a private CA) also
    # means HTTPS on a loopback host, which otherwise gets plain HTTP
    tls: ssl.SSLContext | None = None
    user_agent: str = "layerforge"
    sleep: Callable[[float], None] = time.sleep
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)
    # scope -> (challenge, monotonic expiry): a token about to expire is renewed before a
    # request (a registry may cut a long upload short with a 401 instead of reading it)
    _renew: dict[str, tuple[Challenge, float]] = field(default_factory=dict, repr=False)
    _basic: bool = field(default=False, repr=False)
    _answered: bool = field(default=False, repr=False)  # the registry answered at least once
    # attempts of an exchange before the registry ever answered (a probe for an optional
    # use, such as the remote cache, makes one: an unreachable registry costs no backoff)
    attempts_unanswered: int = 3
    _idle: list[http.client.HTTPConnection] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def answered(self) -> bool:
        """Whether the registry answered any request of this client (else it is unreachable,
        or nothing was asked yet)."""
        return self._answered

    @property
    def scheme(self) -> str:
        if self.insecure or (is_loopback(self.host) and self.tls is None):
            return "http"
        return "https"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    # -- connections -------------------------------------------------------------------------
    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        proxy = self.proxy.for_netloc(scheme, netloc)
        if proxy is not None and scheme == "https":
            conn = http.client.HTTPSConnection(
                proxy.host, proxy.port, timeout=300, blocksize=CHUNK, context=self.tls
            )
            conn.set_tunnel(netloc, headers=proxy.headers)  # CONNECT; TLS to the registry
            return conn
        if proxy is not None:
            return http.client.HTTPConnection(proxy.host, proxy.port, timeout=300, blocksize=CHUNK)
        if scheme == "https":
            return http.client.HTTPSConnection(
                netloc, timeout=300, blocksize=CHUNK, context=self.tls
            )
        return http.client.HTTPConnection(netloc, timeout=300, blocksize=CHUNK)

    @contextmanager
    def _connection(self, scheme: str, netloc: str) -> Iterator[http.client.HTTPConnection]:
        own = scheme == self.scheme and netloc == self.host
        conn = None
        if own:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
        conn = conn or self._connect(scheme, netloc)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if own:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()

    # -- one exchange ------------------------------------------------------------------------
    def _once(
        self, method: str, url: str, headers: dict[str, str], body: Body | None, sink: Sink | None
    ) -> Response:
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        proxy = self.proxy.for_netloc(parts.scheme, parts.netloc)
        with self._connection(parts.scheme, parts.netloc) as conn:
            headers = {"User-Agent": self.user_agent, **headers}
            if proxy is not None and parts.scheme == "http":
                target = f"http://{parts.netloc}{target}"  # absolute-URI through the proxy
                headers.update(proxy.headers)
            if body is None:
                if method in ("PUT", "POST", "PATCH"):
                    headers["Content-Length"] = "0"
                conn.request(method, target, headers=headers)
            elif body.path is not None:
                length = body.stop() - body.offset
                headers["Content-Length"] = str(length)
                with body.path.open("rb") as fh:
                    fh.seek(body.offset)
                    reader = _Progress(fh, body.progress, body.offset, length)
                    conn.request(method, target, reader, headers)
            else:
                headers["Content-Length"] = str(body.stop() - body.offset)
                conn.request(method, target, body.data[body.offset : body.stop()], headers)
            resp = conn.getresponse()
            if resp.status == 407 and proxy is not None and parts.scheme == "http":
                raise self._proxy_refused(proxy, parts.netloc, "407 Proxy Authentication Required")
            if parts.netloc == self.host:
                self._answered = True
            data = b""
            if sink is not None and resp.status in (200, 206):
                stream_into(resp, sink)
            else:
                data = resp.read()
            if resp.status == 400 and parts.scheme == "http" and b"HTTPS server" in data:
                raise self._speaks_https()  # Go's answer to plain HTTP on a TLS port
            return Response(resp.status, dict(resp.getheaders()), data, url)

    # -- the request loop --------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        scope: str = "",
        sink: Sink | None = None,
        retry_faults: bool = True,
    ) -> Response:
        """Send with auth, retries and redirects; returns the final response (any status).

        With a ``sink``, a GET's 200/206 body is streamed into it and a broken transfer
        resumes where the sink stands. ``retry_faults=False``: a connection fault raises
        :class:`ConnectionFault` at once (the caller knows how to resume)."""
        start = url = path if "://" in path else self.url(path)
        refreshed = False
        attempt = faults = redirects = 0
        while True:
            send = self._headers(url, headers, scope, sink)
            try:
                resp = self._once(method, url, send, body, sink)
            except ssl.SSLCertVerificationError as exc:
                raise self._untrusted(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                faults += 1
                self._after_fault(exc, method, url, faults, retry=retry_faults)
                url, redirects = start, 0  # a redirect target may have expired
                continue
            if resp.status == 416 and sink is not None and sink.size and faults < FAULT_RETRIES:
                faults += 1
                sink.reset()  # the range asked for is not there: start over
                continue
            if resp.status == 401 and not refreshed:
                refreshed = True
                if self._answer(resp, scope):
                    continue
            if _retryable(resp) and attempt + 1 < RETRIES:
                attempt += 1
                self.sleep(_retry_after(resp, attempt))
                continue
            if resp.status in _REDIRECTS and resp.header("Location") and redirects < 5:
                redirects += 1
                url = urllib.parse.urljoin(url, resp.header("Location"))
                method, body = ("GET", None) if resp.status == 303 else (method, body)
                continue
            return resp

    def _headers(
        self, url: str, headers: Mapping[str, str] | None, scope: str, sink: Sink | None
    ) -> dict[str, str]:
        send = dict(headers or {})
        if sink is not None and sink.size:
            send["Range"] = f"bytes={sink.size}-"
        if urllib.parse.urlsplit(url).netloc == self.host:
            send.update(self._auth_header(scope))
        return send

    def _after_fault(
        self, exc: BaseException, method: str, url: str, faults: int, *, retry: bool
    ) -> None:
        """Sleep before the next attempt, or raise when it should not or cannot be retried."""
        if str(exc).startswith("Tunnel connection failed"):  # http.client's CONNECT refused
            raise self._tunnel_refused(url, exc) from None
        limit = FAULT_RETRIES if self._answered else self.attempts_unanswered
        if not retry or faults >= limit:
            raise self._fault(exc, method, url, faults) from None
        self.sleep(min(0.25 * 2**faults, 8.0))

    def _fault(self, exc: BaseException, method: str, url: str, attempts: int) -> RegistryError:
        if not self._answered:
            return self._unreachable(exc)
        target = urllib.parse.urlsplit(url).path
        cause = describe_fault(exc)
        times = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        return ConnectionFault(
            f"registry {self.host}: {method} {target}: {cause} ({times})",
            cause=cause,
            method=method,
            target=target,
            attempts=attempts,
            hint="the connection broke in the middle of a transfer; check the network and "
            "any proxy between here and the registry, then run the command again (what was "
            "transferred completely is not sent again)",
        )

    def _tunnel_refused(self, url: str, exc: BaseException) -> RegistryError:
        parts = urllib.parse.urlsplit(url)
        proxy = self.proxy.for_netloc(parts.scheme, parts.netloc)
        assert proxy is not None  # only a proxied connection opens a tunnel
        answer = str(exc).removeprefix("Tunnel connection failed:").strip()
        return self._proxy_refused(proxy, parts.netloc, answer)

    def _proxy_refused(self, proxy: ProxyURL, netloc: str, answer: str) -> RegistryError:
        auth = answer.startswith("407")
        return RegistryError(
            f"registry {self.host}: through proxy {proxy.display}: the proxy refused the "
            f"connection to {netloc} ({answer})",
            hint="put the proxy's user and password in the proxy URL "
            "(HTTPS_PROXY=http://user:password@host:port)"
            if auth
            else "check HTTPS_PROXY/HTTP_PROXY, or list the registry in NO_PROXY if it is "
            "reachable directly",
        )

    def _unreachable(self, exc: BaseException) -> RegistryError:
        proxy = self.proxy.for_netloc(self.scheme, self.host)
        if proxy is not None:
            return RegistryError(
                f"registry {self.host} is unreachable through proxy {proxy.display} "
                f"({self.scheme}): {exc}",
                hint="check that the proxy runs and HTTPS_PROXY/HTTP_PROXY name it; list hosts "
                "to reach directly in NO_PROXY",
            )
        return RegistryError(
            f"registry {self.host} is unreachable ({self.scheme}): {exc}",
            hint="check the registry address and your network; for a plain-HTTP registry "
            "that is not on this machine, list it in LAYERFORGE_INSECURE_REGISTRIES",
        )

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> RegistryError:
        return RegistryError(
            f"registry {self.host}: its TLS certificate is not trusted "
            f"({exc.verify_message or exc.reason})",
            hint=_ca_hint(self.host),
        )

    def _speaks_https(self) -> RegistryError:
        return RegistryError(
            f"registry {self.host} serves HTTPS, but plain HTTP was used (the default for a "
            "loopback host without a CA of its own)",
            hint=_ca_hint(self.host),
        )

    def _auth_header(self, scope: str) -> dict[str, str]:
        renew = self._renew.get(scope)
        if renew is not None and time.monotonic() > renew[1]:
            self._store_token(renew[0], scope)
        token = self._tokens.get(scope) or self._tokens.get("")
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self.credential is not None:
            return {"Authorization": self.credential.basic_header()}
        return {}

    def _answer(self, resp: Response, scope: str) -> bool:
        """React to a 401: True if the request should be sent again with new auth."""
        header = resp.header("WWW-Authenticate")
        if not header:
            return False
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            self._basic = True
            return self.credential is not None
        if challenge.scheme == "bearer":
            self._store_token(challenge, scope)
            return True
        return False

    def _store_token(self, challenge: Challenge, scope: str) -> None:
        token, lifetime = self._fetch_token(challenge, scope)
        self._tokens[scope] = token
        self._renew[scope] = (challenge, time.monotonic() + max(lifetime - 15.0, 5.0))

    def _fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} sent a Bearer challenge without a realm")
        scopes = [s for s in (challenge.get("scope"), *scope.split(" ")) if s]
        query: list[tuple[str, str]] = []
        if challenge.get("service"):
            query.append(("service", challenge.get("service") or ""))
        query += [("scope", s) for s in dict.fromkeys(scopes)]
        cred = self.credential
        if cred is not None and cred.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", cred.identity_token),
                    ("client_id", self.user_agent), *query]  # fmt: skip
            req = urllib.request.Request(realm, urllib.parse.urlencode(form).encode())  # noqa: S310
        else:
            sep = "&" if "?" in realm else "?"
            req = urllib.request.Request(realm + sep + urllib.parse.urlencode(query))  # noqa: S310
            if cred is not None and (cred.username or cred.password):
                req.add_unredirected_header("Authorization", cred.basic_header())
        return _read_token(req, self.host, self.tls, self.proxy)

    def ping(self) -> Response:
        return self.request("GET", "/v2/")


def _token_opener(
    req: urllib.request.Request, tls: ssl.SSLContext | None, proxy: ProxyConfig
) -> urllib.request.OpenerDirector:
    """An opener for the token request ``req``: the registry's trust, and the proxy our rules
    pick for the realm (``ProxyHandler({})`` keeps urllib from reading the environment)."""
    parts = urllib.parse.urlsplit(req.full_url)
    chosen = proxy.for_netloc(parts.scheme, parts.netloc)
    if chosen is not None:
        req.set_proxy(f"{chosen.host}:{chosen.port}", parts.scheme)
        for key, value in chosen.headers.items():  # urllib moves it onto the CONNECT
            req.add_unredirected_header(key, value)
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
    )


def _read_token(
    req: urllib.request.Request,
    host: str,
    tls: ssl.SSLContext | None = None,
    proxy: ProxyConfig | None = None,
) -> tuple[str, float]:
    """(token, lifetime in seconds: ``expires_in``, 60 when absent as the spec says)."""
    try:
        # the realm is the registry's: it gets the registry's trust (``tls``) and our proxy
        opener = _token_opener(req, tls, proxy or ProxyConfig())
        with opener.open(req, timeout=60) as resp:
            doc = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise RegistryError(
            f"registry {host}: the token service {req.full_url.split('?')[0]} refused the "
            f"credentials (HTTP {exc.code})",
            hint=f"run `layerforge login {host}` with a user that may access this repository",
        ) from None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"registry {host}: token service failed: {exc}") from None
    token = doc.get("token") or doc.get("access_token")
    if not token:
        raise RegistryError(f"registry {host}: the token service returned no token")
    try:
        lifetime = float(doc.get("expires_in") or 60)
    except (TypeError, ValueError):
        lifetime = 60.0
    return str(token), lifetime


def _ca_hint(host: str) -> str:
    return (
        f"put the certificate of the CA that signed the registry's certificate in "
        f"certs.d/{host}/ca.crt under LAYERFORGE_CERTS_DIR, ~/.config/containers/certs.d, "
        "/etc/containers/certs.d or /etc/docker/certs.d (see docs/registry.md)"
    )


def _retryable(resp: Response) -> bool:
    return resp.status == 429 or resp.status >= 500


def _retry_after(resp: Response, attempt: int) -> float:
    value = resp.header("Retry-After")
    if value.strip().isdigit():
        return min(float(value), 60.0)
    return min(0.5 * 2.0**attempt, 16.0)


def auth_error(resp: Response, host: str, repository: str, action: str) -> RegistryError:
    """401/403 as a message that names the registry, the repository and how to log in."""
    verb = "denied" if resp.status == 403 else "requires authentication"
    return RegistryError(
        f"registry {host}: {action} {repository} {verb} (HTTP {resp.status})",
        hint=f"run `layerforge login {host}` (or `docker login {host}`) with an account that "
        f"may {'push to' if 'push' in action else 'pull from'} {repository}",
    )


def check(resp: Response, host: str, repository: str, action: str) -> Response:
    """Raise a RegistryError for any non-2xx response."""
    if 200 <= resp.status < 300:
        return resp
    if resp.status in (401, 403):
        raise auth_error(resp, host, repository, action)
    detail = resp.data[:300].decode(errors="replace").strip()
    raise RegistryError(
        f"registry {host}: {action} {repository} failed: HTTP {resp.status} {detail}",
        hint="check the reference; retry later if the registry is overloaded",
    )
