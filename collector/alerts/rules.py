"""Alert rules and receivers: the YAML file (data/alerts.yaml is the default), typed and checked once at load.

    rules:
      - name: InferwatchErrorRateHigh      # the alertname label
        metric: error_rate                 # one of Metric
        condition: "> 0.05"                # > >= < <= == != and a number
        pools: ["*"]                       # pool name globs (fnmatch); default every pool
        window: 5m                         # request metrics only (default 5m); min_requests likewise
        for: 1m                            # pending this long before firing (default 0: fire at once)
        severity: critical                 # critical | warning | info
        labels: {team: serving}
        annotations: {summary: "errors on {{ $labels.pool }}: {{ $value }}"}
    receivers:
      - {name: oncall, url: "http://...", secret_env: ONCALL_WEBHOOK_SECRET, format: alertmanager}
    delivery: {timeout: 5s, initial_backoff: 1s, max_backoff: 5m, give_up_after: 24h}
    repeat_interval: 4h

Every error names the file, the rule (index and name) or receiver, and the field. Secrets are `whsec_<base64>`
(Standard Webhooks), given inline (`secret`) or, better, by environment variable (`secret_env`); they are held
as SecretStr and never appear in messages, logs or the store.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "data" / "alerts.yaml"
DEFAULT_WINDOW_S = 300.0  # of request metrics


class AlertConfigError(ValueError):
    """An alert rules file that cannot be used; the message names the file, the rule or receiver and the field."""


class Metric(StrEnum):
    ttft_p50 = "ttft_p50"  # seconds, over the ok requests of the window (collector/fleet/report.py)
    ttft_p90 = "ttft_p90"
    ttft_p99 = "ttft_p99"
    tpot_p50 = "tpot_p50"
    tpot_p90 = "tpot_p90"
    tpot_p99 = "tpot_p99"
    e2e_p50 = "e2e_p50"
    e2e_p90 = "e2e_p90"
    e2e_p99 = "e2e_p99"
    error_rate = "error_rate"  # errors / requests in the window
    cost_per_mtok = "cost_per_mtok"  # USD per 1M tokens (prompt + completion): the pool's window cost / tokens
    cache_hit_ratio = "cache_hit_ratio"  # cached / prompt tokens of the ok requests in the window
    goodput = "goodput"  # share of the window's requests within the SLO (data/slo.yaml), errors as misses
    drift = "drift"  # drift metrics flagged in the pool's latest canary run
    eval_accuracy_drop = "eval_accuracy_drop"  # reference minus pool accuracy, latest eval run of each suite
    eval_regressed = "eval_regressed"  # 1 when the latest eval run of a suite found the pool worse, else 0
    gate_failed = "gate_failed"  # 1 when the latest gate verdict on a candidate is fail, else 0

    @property
    def over_requests(self) -> bool:
        return self in REQUEST_METRICS


REQUEST_METRICS = frozenset(
    m for m in Metric if m.split("_")[0] in ("ttft", "tpot", "e2e", "error", "cost", "cache", "goodput")
)
# labels the evaluator sets itself: alertname and severity, and what identifies the alert's subject
RESERVED_LABELS = frozenset({"alertname", "severity", "pool", "revision", "suite", "baseline"})


class Severity(StrEnum):
    critical = "critical"
    warning = "warning"
    info = "info"


class NoData(StrEnum):
    keep = "keep"  # an alert whose subject has no data keeps its state (firing stays firing)
    resolve = "resolve"  # ... or resolves (e.g. a pool that is gone)


class Op(StrEnum):
    gt = ">"
    ge = ">="
    lt = "<"
    le = "<="
    eq = "=="
    ne = "!="


_COMPARE = {
    Op.gt: float.__gt__, Op.ge: float.__ge__, Op.lt: float.__lt__,
    Op.le: float.__le__, Op.eq: float.__eq__, Op.ne: float.__ne__,
}  # fmt: skip
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_TEMPLATE_REF = re.compile(r"^\s*\$(value|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*$")


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True)

    op: Op
    threshold: float

    def holds(self, value: float) -> bool:
        return bool(_COMPARE[self.op](float(value), self.threshold))

    def __str__(self) -> str:
        return f"{self.op.value} {self.threshold:g}"


def _condition(value: Any) -> Any:
    if isinstance(value, str):
        match = _CONDITION.match(value)
        if match is None:
            raise ValueError(f"write a comparison and a number, e.g. '> 0.05' or '<= 2'; got {value!r}")
        return {"op": match.group(1), "threshold": float(match.group(2))}
    return value


def parse_duration(value: Any) -> Any:
    """Seconds from a number or a string like 90s, 5m, 1h30m, 500ms, 1d."""
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"write a duration like 90s, 5m, 1h30m or 500ms; got {value!r}")
        return sum(float(n) * _UNITS[u] for n, u in parts)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


def render(template: str, labels: dict[str, str], value: float | None) -> str:
    """`{{ $value }}` and `{{ $labels.<name> }}` (the Prometheus spelling), so annotations read the same in both."""

    def one(match: re.Match[str]) -> str:
        ref = _TEMPLATE_REF.match(match.group(1))
        assert ref is not None  # checked at load
        if ref.group(2) is not None:
            return labels.get(ref.group(2), "")
        return "" if value is None else f"{value:.4g}"

    return _TEMPLATE.sub(one, template)


def _check_template(text: str) -> None:
    for match in _TEMPLATE.finditer(text):
        if _TEMPLATE_REF.match(match.group(1)) is None:
            refs = "{{ $value }} and {{ $labels.<name> }}"
            raise ValueError(f"{match.group(0)!r}: templates may use {refs} only")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Rule(_Strict):
    name: str = Field(pattern=_NAME, max_length=128)
    metric: Metric
    condition: Annotated[Condition, BeforeValidator(_condition)]
    pools: tuple[str, ...] = Field(default=("*",), min_length=1)
    window: PositiveDuration | None = None
    min_requests: int | None = Field(default=None, ge=1)
    for_: Duration = Field(default=0.0, alias="for")
    severity: Severity = Severity.warning
    labels: dict[Annotated[str, Field(pattern=_NAME)], str] = Field(default_factory=dict)
    annotations: dict[Annotated[str, Field(pattern=_NAME)], str] = Field(default_factory=dict)
    receivers: tuple[str, ...] | None = None  # default: every receiver
    nodata: NoData = NoData.keep

    @model_validator(mode="after")
    def _fits_the_metric(self) -> Rule:
        if not self.metric.over_requests:
            for field in ("window", "min_requests"):
                if getattr(self, field) is not None:
                    raise _FieldError(field, f"applies to request metrics only; {self.metric} reads the latest run")
        if reserved := sorted(RESERVED_LABELS & set(self.labels)):
            raise _FieldError("labels", f"{', '.join(reserved)} is set by the evaluator; choose another label name")
        for key, text in self.annotations.items():
            try:
                _check_template(text)
            except ValueError as exc:
                raise _FieldError(f"annotations.{key}", str(exc)) from None
        return self

    @property
    def window_s(self) -> float:
        return self.window if self.window is not None else DEFAULT_WINDOW_S

    @property
    def min_count(self) -> int:
        return self.min_requests or 1


class Format(StrEnum):
    alertmanager = "alertmanager"  # the Alertmanager webhook payload, version 4
    slack = "slack"  # {"text": ...}, for Slack-compatible incoming webhooks


class Receiver(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    url: str = Field(pattern=r"^https?://\S+$")
    format: Format = Format.alertmanager
    secret: SecretStr | None = None
    secret_env: str | None = None
    group_by: tuple[Annotated[str, Field(pattern=_NAME)], ...] = ("alertname",)
    max_alerts: int = Field(default=0, ge=0)  # alerts per notification; a bigger group is split, never cut
    send_resolved: bool = True

    @model_validator(mode="after")
    def _one_secret(self) -> Receiver:
        if self.secret is not None and self.secret_env is not None:
            raise _FieldError("secret", "give secret or secret_env, not both")
        if self.secret is not None:
            try:
                signing_key(self.secret)
            except ValueError as exc:
                raise _FieldError("secret", str(exc)) from None
        return self

    def resolved(self, environ: Mapping[str, str] | None = None) -> Receiver:
        """This receiver with `secret_env` read from the environment into `secret`."""
        if self.secret_env is None:
            return self
        env = os.environ if environ is None else environ
        if self.secret_env not in env:
            raise _FieldError("secret_env", f"environment variable {self.secret_env} is not set")
        secret = SecretStr(env[self.secret_env])
        try:
            signing_key(secret)
        except ValueError as exc:
            raise _FieldError("secret_env", f"{self.secret_env}: {exc}") from None
        return self.model_copy(update={"secret": secret, "secret_env": None})

    def key(self) -> bytes | None:
        return signing_key(self.secret) if self.secret is not None else None


def signing_key(secret: SecretStr) -> bytes:
    """The HMAC key of a Standard Webhooks secret `whsec_<base64>` (the message never shows the secret)."""
    value = secret.get_secret_value()
    if not value.startswith("whsec_"):
        raise ValueError("a secret is `whsec_` followed by base64 (Standard Webhooks)")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after `whsec_` is not valid base64") from None
    if len(key) < 16:
        raise ValueError(f"the key is {len(key)} bytes; use at least 16 (24 to 64 is usual)")
    return key


class DeliveryPolicy(_Strict):
    timeout: PositiveDuration = 5.0  # the deadline of one attempt: connect, send and read together
    initial_backoff: PositiveDuration = 1.0  # before the first retry; doubles per attempt, with jitter
    max_backoff: PositiveDuration = 300.0
    max_retry_after: PositiveDuration = 600.0  # the longest wait a receiver's Retry-After gets; more is cut to this
    give_up_after: PositiveDuration = 86400.0  # a notification retried this long (the waits it was given) expires
    poll: PositiveDuration = 1.0  # how often the outbox is looked at when nothing is due sooner
    concurrency: int = Field(default=8, ge=1)  # attempts in flight at once, per receiver

    @property
    def max_wait_s(self) -> float:
        """The longest wait any answer schedules: a retry time further ahead means the clock stepped back."""
        return max(self.max_backoff, self.max_retry_after)


class AlertConfig(_Strict):
    rules: tuple[Rule, ...] = Field(min_length=1)
    receivers: tuple[Receiver, ...] = ()
    delivery: DeliveryPolicy = DeliveryPolicy()
    repeat_interval: PositiveDuration = 4 * 3600.0  # a firing alert is notified again this long after the last time

    @model_validator(mode="after")
    def _names(self) -> AlertConfig:
        for kind, names_in_order in (("rules", [r.name for r in self.rules]),
                                     ("receivers", [r.name for r in self.receivers])):  # fmt: skip
            seen: set[str] = set()
            for index, name in enumerate(names_in_order):
                if name in seen:
                    raise _FieldError("name", f"duplicate name {name!r}; names must be unique", (kind, index))
                seen.add(name)
        names = {r.name for r in self.receivers}
        for index, rule in enumerate(self.rules):
            unknown = sorted(set(rule.receivers or ()) - names)
            if unknown:
                known = ", ".join(sorted(names)) or "none"
                message = f"no receiver {', '.join(unknown)} (receivers: {known})"
                raise _FieldError("receivers", message, ("rules", index))
        return self

    def receiver(self, name: str) -> Receiver | None:
        return next((r for r in self.receivers if r.name == name), None)

    def receivers_of(self, rule: Rule) -> tuple[Receiver, ...]:
        return tuple(r for r in self.receivers if rule.receivers is None or r.name in rule.receivers)

    def with_receivers(self, receivers: tuple[Receiver, ...]) -> AlertConfig:
        """The same rules sending to `receivers` instead (e.g. a local receiver the demo starts)."""
        return AlertConfig(
            rules=self.rules, receivers=receivers, delivery=self.delivery, repeat_interval=self.repeat_interval
        )


class _FieldError(ValueError):
    """A field's problem found by a validator; `where` overrides the location pydantic would give."""

    def __init__(self, field: str, message: str, where: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.where = where


def _label(raw: Any, loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """'rules[2] 'Name'' and the rest of the location, from a pydantic location."""
    if len(loc) >= 2 and loc[0] in ("rules", "receivers") and isinstance(loc[1], int):
        kind, index = loc[0], loc[1]
        entries = raw.get(kind) if isinstance(raw, dict) else None
        entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
        name = f" {entry['name']!r}" if isinstance(entry, dict) and isinstance(entry.get("name"), str) else ""
        return f"{kind}[{index}]{name}", loc[2:]
    return "", loc


def _message(source: Path, raw: Any, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc: tuple[Any, ...] = tuple(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, _FieldError):
        loc, message = (*(cause.where or loc), cause.field), str(cause)
    else:
        message = err["msg"].removeprefix("Value error, ")
        shown = err["input"]
        if not isinstance(shown, dict | list) and "secret" not in loc:
            message += f" (got {shown!r})"
    where, rest = _label(raw, loc)
    field = ".".join(str(p) if p != "for_" else "for" for p in rest) or "(entry)"
    return f"{source}: {where + ': ' if where else ''}field '{field}': {message}"


def parse_alert_config(raw: Any, source: Path, environ: Mapping[str, str] | None = None) -> AlertConfig:
    if not isinstance(raw, dict):
        raise AlertConfigError(f"{source}: expected a mapping with a `rules:` list")
    try:
        config = AlertConfig.model_validate(raw)
    except ValidationError as exc:
        raise AlertConfigError(_message(source, raw, exc)) from None
    receivers = []
    for index, receiver in enumerate(config.receivers):
        try:
            receivers.append(receiver.resolved(environ))
        except _FieldError as exc:
            where = f"receivers[{index}] {receiver.name!r}"
            raise AlertConfigError(f"{source}: {where}: field '{exc.field}': {exc}") from None
    return config.model_copy(update={"receivers": tuple(receivers)})


def load_alert_config(path: Path = DEFAULT_RULES, environ: Mapping[str, str] | None = None) -> AlertConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise AlertConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AlertConfigError(
            f"{path}: invalid YAML{f' at line {mark.line + 1}' if mark else ''}: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_alert_config(raw, path, environ)
