"""`processors.attributes` configuration: the Collector's attributes processor (contrib v0.129)
— `actions`, and `include` / `exclude` matching — with its names and checks. The action model is
shared with the `resource` processor.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from gateway import goregex
from gateway.config.types import ComponentConfig
from processors.attributes.checks import ActionSpec, check_action


def _none_is_empty(value: Any) -> Any:
    return [] if value is None else value  # `services:` with nothing after it, as in Go


Strings = Annotated[list[str], BeforeValidator(_none_is_empty)]


class ActionConfig(ComponentConfig):
    """One action on an attribute map."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    key: str = Field("", description="The attribute to act on (required, except for delete "
                     "and hash with a pattern).")
    action: str = Field("", description="insert, update, upsert, delete, hash, extract or "
                        "convert (case-insensitive).")
    value: Any = Field(None, description="insert/update/upsert: the value to set; its YAML "
                       "type (string, int, double, bool, list, map) is kept.")
    pattern: str = Field("", description="delete/hash: a regular expression (RE2 syntax) on "
                         "attribute keys; extract: one with named groups "
                         "((?P<name>…)) applied to the value of `key`, each group written "
                         "to the attribute of its name.")
    from_attribute: str = Field("", description="insert/update/upsert: copy the value of this "
                                "attribute (nothing happens when it is absent).")
    from_context: str = Field("", description="insert/update/upsert: take the value from the "
                              "request: client.address, or metadata.<header> (a request "
                              "header or gRPC metadata; the receiver needs include_metadata: "
                              "true; several values are joined with ';').")
    converted_type: str = Field("", description="convert: int, double or string.")

    @model_validator(mode="after")
    def _check(self) -> ActionConfig:
        self.spec()
        return self

    def spec(self) -> ActionSpec:
        return check_action(self.action, self.key, self.value, self.pattern,
                            self.from_attribute, self.from_context, self.converted_type)


class AttributeMatch(ComponentConfig):
    key: str = Field("", description="The attribute that must be present.")
    value: Any = Field(None, description="Its value: compared with type (strict), or a "
                       "regular expression on its text (regexp). Absent: any value matches.")


class LibraryMatch(ComponentConfig):
    name: str = Field("", description="Instrumentation scope name to match.")
    version: str | None = Field(None, description="Scope version to match; absent: any "
                                "version, empty: only an empty version.")


class SeverityNumberMatch(ComponentConfig):
    min: int = Field(0, description="Lowest severity number that matches (9 = INFO, "
                     "13 = WARN, 17 = ERROR, 21 = FATAL).")
    match_undefined: bool = Field(False, description="Whether records without a severity "
                                  "number match.")


class RegexpOptions(ComponentConfig):
    cacheenabled: bool = Field(False, description="Remember match results per string.")
    cachemaxnumentries: int = Field(0, ge=0, description="Cache size; 0: unbounded.")


MATCH_TYPES = ("regexp", "strict")


class MatchProperties(ComponentConfig):
    """What an item must have to be included (or excluded). Every property given must match;
    within a list of names, one match is enough. Which properties apply depends on the signal
    (checked when a pipeline is built)."""

    match_type: str = Field("", description="strict (exact text) or regexp (RE2, matching "
                            "anywhere in the text unless anchored).")
    regexp: RegexpOptions | None = Field(None, description="Options of match_type regexp.")
    services: Strings = Field(default_factory=list, description="Spans: resource service.name.")
    span_names: Strings = Field(default_factory=list, description="Spans: span name.")
    span_kinds: Strings = Field(default_factory=list, description="Spans: kind, e.g. "
                                "SPAN_KIND_SERVER.")
    log_bodies: Strings = Field(default_factory=list, description="Logs: the body as text.")
    log_severity_texts: Strings = Field(default_factory=list, description="Logs: severity text.")
    log_severity_number: SeverityNumberMatch | None = Field(
        None, description="Logs: a lowest severity number.")
    metric_names: Strings = Field(default_factory=list, description="Metrics: metric name.")
    attributes: list[AttributeMatch] = Field(default_factory=list, description="Spans, logs: "
                                             "item attributes; all must match.")
    resources: list[AttributeMatch] = Field(default_factory=list, description="Spans, logs: "
                                            "resource attributes; all must match. (Metrics: "
                                            "accepted and ignored, as upstream.)")
    libraries: list[LibraryMatch] = Field(default_factory=list, description="Spans, logs: "
                                          "instrumentation scope name and version.")

    @model_validator(mode="after")
    def _check(self) -> MatchProperties:
        for field in ("attributes", "resources"):
            for attr in getattr(self, field):
                if not attr.key:
                    raise ValueError(f"{field}: can't have empty key in the list of attributes")
        if self.needs_match_type() and self.match_type not in MATCH_TYPES:
            raise ValueError(f"unrecognized match_type: '{self.match_type}', valid types are: "
                             "[regexp strict]")
        if self.match_type == "regexp":
            self._check_patterns()
        return self

    def needs_match_type(self) -> bool:
        """Go builds a filter set (and checks match_type) only for what needs one."""
        lists = (self.services, self.span_names, self.span_kinds, self.log_bodies,
                 self.log_severity_texts, self.metric_names, self.libraries)
        valued = [a for a in (*self.attributes, *self.resources) if a.value is not None]
        return any(lists) or bool(valued)

    def _check_patterns(self) -> None:
        for field in ("attributes", "resources"):
            for attr in getattr(self, field):
                if attr.value is not None and not isinstance(attr.value, str):
                    kind = {bool: "Bool", int: "Int", float: "Double", list: "Slice",
                            dict: "Map"}.get(type(attr.value), type(attr.value).__name__)
                    raise ValueError(f'{field}: match_type=regexp for "{attr.key}" only '
                                     f"supports Str, but found {kind}")
        patterns = [*self.services, *self.span_names, *self.span_kinds, *self.log_bodies,
                    *self.log_severity_texts, *self.metric_names,
                    *(a.value for a in (*self.attributes, *self.resources) if a.value),
                    *(lib.name for lib in self.libraries),
                    *(lib.version for lib in self.libraries if lib.version is not None)]
        for pattern in patterns:
            goregex.compile(pattern)


class AttributesConfig(ComponentConfig):
    include: MatchProperties | None = Field(None, description="Only items matching these "
                                            "properties are processed.")
    exclude: MatchProperties | None = Field(None, description="Items matching these "
                                            "properties are not processed (checked after "
                                            "include).")
    actions: list[ActionConfig] = Field(default_factory=list, description="Actions applied "
                                        "in order to the attributes of each span, log record "
                                        "and metric data point.")

    @model_validator(mode="after")
    def _check(self) -> AttributesConfig:
        if not self.actions:
            raise ValueError('missing required field "actions"')
        return self
