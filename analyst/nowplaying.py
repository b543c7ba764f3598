"""What a signage player shows now: player adapters and the bounded hold over failures.

A source is a callable that asks the player once and returns the content id on screen
(None: the player says nothing is showing) or raises PlayerError when the player is down,
slow or answers junk. `Holder` turns that stream of answers into the value to announce:
a failing player keeps its last known content for `hold_s` seconds (a reboot or a slow
answer must not split windows), after which the content becomes unknown (None).
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("moodcam.nowplaying")

Source = Callable[[], str | None]

# The device's limit (docs/mqtt.md "Campaign attribution"): longer ids are rejected there.
MAX_CONTENT_ID = 256
# A player's answer is small; a huge body is junk, not a reason to use memory.
MAX_BODY = 1 << 20
ANTHIAS_PATH = "/api/v1/viewer_current_asset"


class PlayerError(Exception):
    """The player could not say what it shows (down, slow, or an answer we cannot use)."""


def clean_content_id(value: Any) -> str | None:
    """The content id for a value read from a player; None for "nothing showing".

    Follows the device's rules for now-playing ids: at most 256 printable characters;
    null, "" and an empty list mean nothing is showing. Numbers are accepted (players
    often use integer ids); anything else is junk.
    """
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PlayerError(f"content id is a {type(value).__name__}, not a string or number")
    text = str(value).strip()
    if not text:
        return None
    if len(text) > MAX_CONTENT_ID:
        raise PlayerError(f"content id longer than {MAX_CONTENT_ID} characters")
    if not text.isprintable():
        raise PlayerError("content id contains control characters")
    return text


def field_path(doc: Any, path: str) -> Any:
    """The value at a dotted path ("data.current.id", "items.0.name"); "" is the document.

    A missing key is junk (PlayerError): the player answered something we do not
    understand, which is not the same as "nothing showing".
    """
    value = doc
    for part in path.split(".") if path else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            try:
                value = value[int(part)]
            except IndexError:
                raise PlayerError(f"field {path!r}: list has no item {part}") from None
        else:
            raise PlayerError(f"field {path!r}: no {part!r} in the player's answer")
    return value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Anthias with authentication on redirects to /login/: that is an error to report,
    # not an HTML page to parse.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get_json(url: str, timeout: float, auth: tuple[str, str] | None) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as e:
        hint = " (needs --player-user and MOODCAM_PLAYER_PASSWORD?)" if e.code in (
            301, 302, 303, 307, 401, 403) else ""
        raise PlayerError(f"HTTP {e.code} from {url}{hint}") from None
    except TimeoutError:
        raise PlayerError(f"no answer from {url} within {timeout:g} s") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PlayerError(f"cannot reach {url}: {reason}") from None
    if len(body) > MAX_BODY:
        raise PlayerError(f"answer from {url} larger than {MAX_BODY} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PlayerError(f"answer from {url} is not JSON: {body[:60]!r}") from None


def http_json_source(url: str, path: str, *, timeout: float = 3.0,
                     auth: tuple[str, str] | None = None) -> Source:
    """Any player with an HTTP JSON endpoint: GET url, read the content id at `path`."""
    def ask() -> str | None:
        return clean_content_id(field_path(_get_json(url, timeout, auth), path))
    return ask


def anthias_source(base_url: str, *, id_field: str = "name", timeout: float = 3.0,
                   auth: tuple[str, str] | None = None) -> Source:
    """Anthias (Screenly OSE): GET /api/v1/viewer_current_asset returns the asset on
    screen as an object (asset_id, name, uri, mimetype, duration, ...) or [] when none."""
    url = base_url.rstrip("/") + ANTHIAS_PATH

    def ask() -> str | None:
        doc = _get_json(url, timeout, auth)
        if doc == []:
            return None
        if not isinstance(doc, dict):
            raise PlayerError(f"Anthias answered a {type(doc).__name__}, not an asset object")
        return clean_content_id(field_path(doc, id_field))
    return ask


def exec_source(command: str, *, timeout: float = 3.0) -> Source:
    """A command run at each poll; the first line it prints is the content id (an empty
    line: nothing showing). A non-zero exit or a timeout is a failure."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("--exec: empty command")

    def ask() -> str | None:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PlayerError(f"{argv[0]} did not finish within {timeout:g} s") from None
        except OSError as e:
            raise PlayerError(f"cannot run {argv[0]}: {e.strerror}") from None
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise PlayerError(f"{argv[0]} exited with {done.returncode} {err[0]}".rstrip())
        try:
            out = done.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise PlayerError(f"{argv[0]} printed bytes that are not UTF-8") from None
        lines = out.splitlines()
        return clean_content_id(lines[0] if lines else "")
    return ask


SAME: Any = object()  # Holder's answer when there is nothing new to announce
_UNSET: Any = object()


@dataclass
class Holder:
    """The content to announce, given each poll's answer and a monotonic time.

    `ok(content, now)` and `failed(reason, now)` return the value to publish when it
    changed, else the sentinel `SAME`. Until the player has answered once, the
    content is not announced at all (the broker's retained value stands) unless the
    player stays silent for `hold_s`, which announces None.
    """

    hold_s: float
    started: float
    current: Any = field(default=_UNSET, init=False)
    last_ok: float | None = field(default=None, init=False)
    failing: str | None = field(default=None, init=False)

    def _set(self, value: str | None) -> Any:
        if value == self.current and self.current is not _UNSET:
            return SAME
        self.current = value
        return value

    def ok(self, content: str | None, now: float) -> Any:
        if self.failing is not None:
            log.warning("player answers again (after: %s); now playing %s",
                        self.failing, content)
            self.failing = None
        self.last_ok = now
        return self._set(content)

    def failed(self, reason: str, now: float) -> Any:
        since = self.started if self.last_ok is None else self.last_ok
        if self.failing is None:
            shown = "nothing" if self.current in (None, _UNSET) else repr(self.current)
            log.warning("player: %s; keeping %s for up to %g s", reason, shown, self.hold_s)
        self.failing = reason
        if now - since < self.hold_s:
            return SAME
        if self.current is not None:
            log.warning("player silent for %g s (%s): now playing unknown (null)",
                        now - since, reason)
        return self._set(None)
