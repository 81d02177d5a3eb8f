"""What every command shares: the exit codes, the parser class (a usage error exits 3), the common flags as
parent parsers, argparse types, the settings of a command line and the doors it opens (store, collector).

Only argparse, the standard library and inferwatch.settings are imported here, so that `--help` stays light;
the doors import the collector when a command opens one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from inferwatch.settings import Settings, SettingsError

if TYPE_CHECKING:
    from collector.state import CollectorState
    from collector.store.api import Store
    from collector.store.protocols import Queryable, StoreLike

# DESIGN: 0 ok, 1 fail, 2 marginal/inconclusive (never a pass), 3 usage or data error
EXIT_OK, EXIT_FAILURE, EXIT_INCONCLUSIVE, EXIT_BAD_INPUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 3 (argparse's 2 reads as the gate's "marginal" in CI), and an unknown
    flag is named even where argparse would first complain of a missing required one (`gate --bogus`)."""

    _given: tuple[str, ...] = ()

    def parse_known_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        self._given = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        unknown = self.unknown_flags(self._given)
        if unknown and message.startswith("the following arguments are required"):
            message = f"unrecognized arguments: {' '.join(unknown)}"
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")

    def unknown_flags(self, given: Sequence[str]) -> list[str]:
        """The flags in `given` that are none of this parser's options (nor an abbreviation of one)."""
        options = self._option_string_actions  # argparse's own table of option strings (Python 3.11)
        unknown = []
        for arg in given:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if not arg.startswith("-") or arg == "-" or self._negative_number_matcher.match(arg) or name in options:
                continue
            if not (name.startswith("--") and any(option.startswith(name) for option in options)):
                unknown.append(arg)
        return unknown


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `15m`, `2h`, `1d` or a plain number of seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 90s, 15m, 2h") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be > 0")
    return seconds


def positive_int(text: str) -> int:
    """A whole number >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def name_list(text: str) -> list[str]:
    """`ref,bf16` -> ["ref", "bf16"] (argparse type)."""
    return [name for name in text.split(",") if name]


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


HOME = _parent()
HOME.add_argument("--home", type=Path, help="state directory (default ./var)")

STORE = _parent()
STORE.add_argument(
    "--store", metavar="URL", help="store URL: a DuckDB file (default <home>/inferwatch.duckdb) or ducklake:..."
)

SLO = _parent()
SLO.add_argument("--slo", type=Path, metavar="FILE",
                 help="goodput SLO: ttft, tpot, e2el in ms (default data/slo.yaml)")  # fmt: skip

ENGINE = _parent()
ENGINE.add_argument("--spec", type=Path, help="pool spec file (default data/pools.yaml)")
ENGINE.add_argument("--port", type=int, help="engine HTTP port (default 8000)")
ENGINE.add_argument("--ray-port", type=int, help="port of the local Ray head (default 6379)")
ENGINE.add_argument("--metrics-port", type=int, help="Ray metrics export port (default 8079)")

EXPOSE = _parent()
EXPOSE.add_argument(
    "--insecure-bind", action="store_true", default=None,
    help="listen beyond loopback without authentication (INFERWATCH_INSECURE_BIND=1; warned at every start)",
)  # fmt: skip


def settings(args: argparse.Namespace) -> Settings:
    """The settings of this command line: defaults, INFERWATCH_* variables, then the flags it has."""
    return Settings.from_env(
        collector_port=getattr(args, "collector_port", None),
        store=getattr(args, "store", None),
        spec=getattr(args, "spec", None),
        serve_port=getattr(args, "port", None),
        ray_port=getattr(args, "ray_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        home=getattr(args, "home", None),
        fsync=getattr(args, "fsync", None),
        overflow=getattr(args, "overflow", None),
        high_water_rows=getattr(args, "high_water_rows", None),
        host=getattr(args, "host", None),
        insecure_bind=getattr(args, "insecure_bind", None),
        api_keys=getattr(args, "api_keys", None),
    )


@contextmanager
def bad_input(what: str) -> Iterator[None]:
    """A ValueError that a library function raises over the user's input is a data error (exit 3) named `what`."""
    try:
        yield
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError(f"{what}: {exc}") from None


@contextmanager
def reader(settings: Settings) -> Iterator[Queryable]:
    """The store for a command that only reads it: attached read-only (never migrated or created)."""
    from collector.store.door import open_reader

    with opened(lambda: open_reader(settings.store_url)) as store:
        yield store


@contextmanager
def writer(settings: Settings, *, create: bool = False) -> Iterator[StoreLike]:
    """The store for a command that writes it (migrated to this code's schema). `create`: a missing embedded
    store is made (else it is a data error naming the path)."""
    from collector.store.door import open_store

    with opened(lambda: open_store(settings.store_url, create=create)) as store:
        yield store


@contextmanager
def opened(open_it: Callable[[], Store]) -> Iterator[Store]:
    """A store that cannot be opened (bad URL, unreachable, newer schema or format) is a data error (exit 3)
    naming the URL; errors while it is used pass on as they are."""
    from collector.store.errors import StoreBusy, StoreError

    try:
        store = open_it()
    except StoreBusy:
        raise
    except StoreError as exc:
        raise SettingsError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def running_collector(settings: Settings) -> CollectorState:
    """The collector of this home, answering; CollectorError (saying how to start it) when there is none."""
    from collector.state import CollectorError, CollectorState, health

    state = CollectorState.load(settings.collector_state)
    if state is None or health(state.url) is None:
        raise CollectorError(
            f"no collector answers (state {settings.collector_state}); start it with `inferwatch collector up`"
        )
    return state


def log(message: str) -> None:
    print(message, flush=True)
