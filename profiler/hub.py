"""A model's ``config.json`` from the Hugging Face Hub, or from a mirror that serves its file API.

Only models the catalog does not know come here (``models.resolve_model`` asks the catalog first).
The file is fetched through the pinned ``huggingface_hub`` client (``hf_hub_download``: the
``/{repo}/resolve/{revision}/config.json`` endpoint, its ETag and ``X-Repo-Commit`` headers, its
on-disk cache layout), with:

- the endpoint from ``HubSettings.endpoint`` (``HF_ENDPOINT`` on the command line, the
  controller's ``--hf-endpoint``): a mirror or an air-gapped cluster's own Hub;
- the token given explicitly, never one the client would find by itself: on the command line
  ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``), in the controller the DGDR namespace's Secret;
- a deadline: the call runs in a daemon thread that is waited for at most ``timeout`` seconds
  (the client's own retries of a slow Hub can take minutes);
- a cache in memory (bounded LRU, entries expire) and on disk (the client's cache, one directory
  per token so that one namespace's token never serves another's gated model, pruned to a number
  of repositories); when the Hub cannot be reached, a file cached on disk is used.

Errors say which model and what the Hub answered. A missing or forbidden model is the request's
fault (``ModelNotFoundError``, ``ModelAccessError``: the DGDR fails); a Hub that does not answer
is not (``HubUnavailableError`` has ``transient = True``: the controller retries with backoff).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from profiler.errors import ProfilerError
from profiler.hf_config import ConfigError

DEFAULT_ENDPOINT = "https://huggingface.co"
CONFIG_FILE = "config.json"
DEFAULT_TIMEOUT = 20.0
DEFAULT_REVISION = "main"
# In memory: this many configs, each for at most this long (a branch like "main" can move on).
MEMORY_ENTRIES = 256
MEMORY_TTL = 3600.0
# On disk: at most this many repositories per token directory (a config.json is a few KB).
DISK_REPOS = 512

T = TypeVar("T")


class HubError(ProfilerError):
    """The Hub did not give the model's config.json; ``model`` and the Hub's ``answer`` say why."""

    reason = "ModelConfigUnavailable"
    transient = False

    def __init__(self, model: str, answer: str, message: str) -> None:
        super().__init__(message)
        self.model = model
        self.answer = answer

    def __reduce__(self) -> tuple[type[HubError], tuple[str, str, str]]:
        return (type(self), (self.model, self.answer, str(self)))


class ModelNotFoundError(HubError):
    """No such model, revision or config.json on the Hub (404): the request names a bad model."""

    reason = "ModelNotFound"


class ModelAccessError(HubError):
    """The Hub refuses the model's config.json (401 without token, 403, gated): bad input too."""

    reason = "ModelAccessDenied"


class HubUnavailableError(HubError):
    """The Hub did not answer in time, or answered with a server error: try again later."""

    reason = "HubUnavailable"
    transient = True


def default_cache_dir() -> str:
    """``DGDR_HUB_CACHE``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/dgdr-profiler/hub``."""
    if explicit := os.environ.get("DGDR_HUB_CACHE"):
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dgdr-profiler", "hub")


@dataclass(frozen=True)
class HubSettings:
    """Where and how to fetch; plain data, so it crosses a process pool by pickling."""

    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    cache_dir: str | None = None  # None: default_cache_dir()
    revision: str = DEFAULT_REVISION

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout!r}")
        object.__setattr__(self, "endpoint", (self.endpoint or DEFAULT_ENDPOINT).rstrip("/"))

    def __repr__(self) -> str:  # never print the token
        return (
            f"HubSettings(endpoint={self.endpoint!r}, token={'***' if self.token else None}, "
            f"timeout={self.timeout!r}, cache_dir={self.cache_dir!r}, revision={self.revision!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        """The command line's settings: ``HF_ENDPOINT``, ``HF_TOKEN`` (or upstream's profiling
        job variable ``HUGGING_FACE_HUB_TOKEN``), ``DGDR_HUB_TIMEOUT`` seconds."""
        env = os.environ if environ is None else environ
        timeout = env.get("DGDR_HUB_TIMEOUT")
        return cls(
            endpoint=env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT,
            token=env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None,
            timeout=float(timeout) if timeout else DEFAULT_TIMEOUT,
        )

    @property
    def token_id(self) -> str:
        """A name for the token that does not reveal it (cache keys, cache directories)."""
        if not self.token:
            return "anonymous"
        return "token-" + hashlib.sha256(self.token.encode()).hexdigest()[:16]


# ---- memory cache -----------------------------------------------------------------------------

_memory: OrderedDict[tuple[str, str, str, str], tuple[float, dict[str, Any]]] = OrderedDict()
_memory_lock = threading.Lock()


def _remember(key: tuple[str, str, str, str], config: dict[str, Any]) -> None:
    with _memory_lock:
        _memory[key] = (time.monotonic() + MEMORY_TTL, config)
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)


def _recall(key: tuple[str, str, str, str]) -> dict[str, Any] | None:
    with _memory_lock:
        entry = _memory.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del _memory[key]
            return None
        _memory.move_to_end(key)
        return copy.deepcopy(entry[1])


def clear_memory_cache() -> None:
    with _memory_lock:
        _memory.clear()


# ---- fetch ------------------------------------------------------------------------------------


def fetch_config(model: str, settings: HubSettings) -> dict[str, Any]:
    """The parsed config.json of the Hub repository ``model``; raises a ``HubError`` subclass
    (or ``ConfigError`` from ``hf_config`` when the file is not a JSON object)."""
    repo = model.strip().strip("/")
    key = (settings.endpoint, repo, settings.revision, settings.token_id)
    cached = _recall(key)
    if cached is not None:
        return cached
    cache_root = Path(settings.cache_dir or default_cache_dir()) / settings.token_id
    path = _with_deadline(
        lambda: _download(repo, settings, cache_root),
        settings.timeout,
        lambda: HubUnavailableError(
            repo,
            f"no answer within {settings.timeout:g} s",
            f"model {repo!r}: the Hub at {settings.endpoint} gave no usable answer for "
            f"{CONFIG_FILE} within {settings.timeout:g} s",
        ),
    )
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"model {repo!r}: {CONFIG_FILE} from {settings.endpoint} is not readable JSON: {exc}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"model {repo!r}: {CONFIG_FILE} from {settings.endpoint} is not a JSON object"
        )
    _remember(key, raw)
    with contextlib.suppress(OSError):  # the most recently used repositories survive _prune
        os.utime(cache_root / ("models--" + repo.replace("/", "--")))
    _prune(cache_root, DISK_REPOS)
    return copy.deepcopy(raw)


def _with_deadline(fn: Callable[[], T], timeout: float, late: Callable[[], Exception]) -> T:
    """``fn()`` in a daemon thread, waited for at most ``timeout`` seconds (then ``late()`` is
    raised; the thread finishes or fails on its own, bounded by the client's timeouts)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="hub-fetch", daemon=True).start()
    if not done.wait(timeout):
        raise late()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _download(repo: str, settings: HubSettings, cache_root: Path) -> str:
    # Imported here: the client and its HTTP stack load only when a model needs the Hub.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"the Hub at {settings.endpoint}"
    try:
        path = hf_hub_download(
            repo,
            CONFIG_FILE,
            revision=settings.revision,
            cache_dir=str(cache_root),
            endpoint=settings.endpoint,
            token=settings.token or False,
            # Half the deadline: a Hub that does not answer in that time leaves room to fall
            # back on a file cached on disk before the deadline.
            etag_timeout=settings.timeout / 2,
        )
    except HFValidationError as exc:
        message = f"model {repo!r} is not a Hugging Face repository id: {exc}"
        raise ModelNotFoundError(repo, "not a repository id", message) from None
    except (RevisionNotFoundError, RemoteEntryNotFoundError) as exc:
        answer = _answer(exc)
        raise ModelNotFoundError(
            repo,
            answer,
            f"model {repo!r}: {where} has no {CONFIG_FILE} at revision "
            f"{settings.revision!r} ({answer})",
        ) from None
    except GatedRepoError as exc:
        answer = _answer(exc)
        raise ModelAccessError(
            repo,
            answer,
            f"model {repo!r} is gated on {where} ({answer}): "
            + (
                "the token has not been granted access"
                if settings.token
                else "it needs a token with access (Secret hf-token-secret, key HF_TOKEN)"
            ),
        ) from None
    except RepositoryNotFoundError as exc:
        answer = _answer(exc)
        status = _status(exc)
        if status == 401:
            hint = (
                "the model does not exist, or the token cannot read it"
                if settings.token
                else "the model does not exist, or is private or gated and needs a token "
                "(Secret hf-token-secret, key HF_TOKEN)"
            )
            raise ModelAccessError(
                repo, answer, f"model {repo!r}: {where} answered {answer}: {hint}"
            ) from None
        raise ModelNotFoundError(
            repo, answer, f"model {repo!r} was not found on {where} ({answer})"
        ) from None
    except HfHubHTTPError as exc:
        answer = _answer(exc)
        status = _status(exc)
        if status in (401, 403):
            raise ModelAccessError(
                repo, answer, f"model {repo!r}: {where} refused {CONFIG_FILE} ({answer})"
            ) from None
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            raise ModelNotFoundError(
                repo, answer, f"model {repo!r}: {where} refused {CONFIG_FILE} ({answer})"
            ) from None
        raise HubUnavailableError(
            repo, answer, f"model {repo!r}: {where} failed to serve {CONFIG_FILE} ({answer})"
        ) from None
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        answer = _answer(cause) if isinstance(cause, HfHubHTTPError) else _brief(cause)
        raise HubUnavailableError(
            repo, answer, f"model {repo!r}: could not fetch {CONFIG_FILE} from {where} ({answer})"
        ) from None
    except OSError as exc:  # connection failures the client did not wrap, an unwritable cache
        raise HubUnavailableError(
            repo,
            _brief(exc),
            f"model {repo!r}: could not fetch {CONFIG_FILE} from {where} ({_brief(exc)})",
        ) from None
    except Exception as exc:  # httpx transport errors and the like: the Hub, not the request
        raise HubUnavailableError(
            repo,
            _brief(exc),
            f"model {repo!r}: could not fetch {CONFIG_FILE} from {where} ({_brief(exc)})",
        ) from None
    return str(path)


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _answer(exc: Exception) -> str:
    """``404 Not Found``, ``401 Unauthorized: <X-Error-Message>``: what the Hub said."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    if not isinstance(code, int):
        return _brief(exc)
    phrase = str(getattr(response, "reason_phrase", "") or "")
    text = f"{code} {phrase}".strip()
    headers = getattr(response, "headers", None)
    detail = headers.get("X-Error-Message") if headers is not None else None
    return f"{text}: {detail}" if detail else text


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def _prune(cache_root: Path, keep: int) -> None:
    """Keep the ``keep`` most recently fetched repositories of one token directory."""
    try:
        repos = [p for p in cache_root.iterdir() if p.is_dir() and p.name.startswith("models--")]
    except OSError:
        return
    if len(repos) <= keep:
        return
    repos.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in repos[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


__all__ = [
    "DEFAULT_ENDPOINT",
    "HubError",
    "HubSettings",
    "HubUnavailableError",
    "ModelAccessError",
    "ModelNotFoundError",
    "clear_memory_cache",
    "default_cache_dir",
    "fetch_config",
]
