"""Go (RE2) regexes on Python's re: Go's syntax and meaning case by case, and Go itself (the
`go` toolchain, when installed) as the oracle over a few thousand generated patterns."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import goregex
from gateway.goregex import GoRegexError, Template, subexp_names

GO = shutil.which("go")


def matches(pattern: str, text: str, **mode: bool) -> bool:
    return goregex.compile(pattern, **mode).search(text) is not None


# --- meaning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern,text,expected", [
    ("a$", "a\n", False),  # Go's $ is the end of the text; Python's would match before \n
    ("(?m)a$", "a\nb", True), ("(?m:^b$)", "a\nb", True), ("^b", "a\nb", False),
    ("a.c", "a\nc", False), ("(?s)a.c", "a\nc", True), ("(?s:a.)(?-s:.)", "a\n\n", False),
    ("\\d", "\u0663", False), ("\\d+", "12", True),  # \d \w \s \b are ASCII
    ("\\w", "é", False), ("\\s", "\v", False), ("[[:space:]]", "\v", True),
    ("\\bfoo\\b", "a foo.", True), ("\\bfoo", "éfoo", True), ("\\B", "", True),
    ("^[[:alpha:]]+[[:^alpha:]]$", "ab1", True), ("[^[:digit:]x]", "x", False),
    ("^a{,2}$", "a{,2}", True), ("^a{,2}$", "aa", False),  # {,n} is literal text in Go
    ("^a{01}$", "a{01}", True), ("^x{2}$", "xx", True), ("^a{2,}$", "aaaa", True),
    ("^\\Q.*+\\E$", ".*+", True), ("\\Q.*+\\E", "abc", False), ("^\\Qa.b", "a.b", True),
    ("^\\101\\x42\\x{43}$", "ABC", True), ("^\\0$", "\x00", True), ("^\\1234$", "S4", True),
    ("a(?i)b|c", "aB", True), ("a(?i)b|c", "C", True), ("^(?:a(?i)b|c)$", "AB", False),
    ("^(?i:a)b$", "Ab", True), ("^(?i:a)b$", "AB", False), ("(?i)[^a]", "A", False),
    ("(?i)k", "\u212a", True), ("(?i)s", "\u017f", True),  # Go's folding orbits
    ("(?i)i", "\u0131", False), ("(?i)\u00df", "\u1e9e", True),  # ...not Python's
    ("(?i)[^k]", "\u212a", False), ("(?i)\\W", "\u212a", False), ("\\W", "\u212a", True),
    ("^\\pL+$", "Ωé", True), ("\\pL", "1", False), ("^\\p{Lu}$", "Ω", True),
    ("(?i)^\\p{Lu}$", "ω", True), ("^\\PN$", "a", True), ("\\p{^N}", "1", False),
    ("^\\p{Nd}+$", "\u0663", True), ("^[\\p{Greek}]", "x", None), ("^\\p{Any}$", "\n", True),
    ("^\\pC$", "\u0378", False),  # Go's C leaves unassigned code points out
    ("^[]a]+$", "]a", True), ("^[a-b-]+$", "a-b", True), ("^[\\d-z]+$", "1-z", True),
    ("^[^\\x00-\\x{10FFFF}]", "a", False), ("[[&&]", "&", True),
    ("a)|(b", "a", None),  # unanchored: an unmatched ) is an error
])
def test_go_meaning(pattern: str, text: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(GoRegexError):
            goregex.compile(pattern)
    else:
        assert matches(pattern, text) is expected


def test_ungreedy_flag_swaps_greediness() -> None:
    assert goregex.compile("(?U)a+").search("aaa").group() == "a"
    assert goregex.compile("(?U)a+?").search("aaa").group() == "aaa"
    assert goregex.compile("(?U:a*)a*").search("aaa").group() == "aaa"


def test_a_repeat_after_flags_or_an_empty_quote_applies_to_what_came_before() -> None:
    # Go reads a*(?i)* as (a*)*; Python would refuse a** outright
    assert goregex.compile("^a*(?i)*$").search("aaa")
    assert goregex.compile("^a\\Q\\E{2}$").search("aa")


@pytest.mark.parametrize("anchored,dotall,text,expected", [
    (False, False, "xa\nbx", False), (True, False, "a\nb", False), (True, True, "a\nb", True),
    (False, True, "xa\nbx", True), (True, True, "xa\nb", False),
])
def test_anchoring_and_dotall(anchored: bool, dotall: bool, text: str, expected: bool) -> None:
    assert matches("a.b", text, anchored=anchored, dotall=dotall) is expected


def test_anchoring_is_textual_as_in_go() -> None:
    # Prometheus compiles ^(?s:a)|(b)$ for `a)|(b`: "starts with a" or "ends with b"
    both = goregex.compile("a)|(b", anchored=True, dotall=True)
    assert both.search("ax") and both.search("xb") and not both.search("xbx")
    assert subexp_names(both) == ["", ""]


def test_group_numbers_and_names_are_gos() -> None:
    regex = goregex.compile("(a)(?P<n>b)(?:c)(?<m>d)(?P<1x>e)(?P<n>f)?")
    assert regex.groups == 5
    assert subexp_names(regex) == ["", "", "n", "m", "1x", "n"]
    m = regex.search("abcde")
    assert m.group(2) == "b" and m.group("n") == "b" and m.group(4) == "e"


# --- rejections -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern,message", [
    ("(?=a)", "invalid or unsupported Perl syntax `(?=a)` (RE2 has no look-around)"),
    ("(?!a)", "invalid or unsupported Perl syntax"),
    ("(?<=a)b", "invalid or unsupported Perl syntax"),
    ("(?<!a)b", "RE2 has no look-around"),
    ("(?#comment)", "invalid or unsupported Perl syntax `(?#comment)`"),
    ("(?i-)a", "invalid or unsupported Perl syntax"),
    ("(?P=n)", "invalid or unsupported Perl syntax"),
    ("(a)\\1", "invalid escape sequence `\\1` (backreferences are not supported)"),
    ("\\k<a>", "invalid escape sequence `\\k`"),
    ("a*+", "invalid nested repetition operator `*+`"),
    ("a**", "invalid nested repetition operator `**`"),
    ("a{2}{3}", "invalid nested repetition operator `{2}{3}`"),
    ("*a", "missing argument to repetition operator `*`"),
    ("a|*", "missing argument to repetition operator `*`"),
    ("(?i)+", "missing argument to repetition operator `+`"),
    ("a\\Z", "invalid escape sequence `\\Z`"),
    ("\\C", "invalid escape sequence `\\C`"),
    ("\\e", "invalid escape sequence `\\e`"),
    ("[\\Qa\\E]", "invalid escape sequence `\\Q`"),
    ("[\\b]", "invalid escape sequence `\\b`"),
    ("\\8", "invalid escape sequence `\\8`"),
    ("\\x4", "invalid escape sequence `\\x4`"),
    ("\\x{110000}", "invalid escape sequence `\\x{110000}`"),
    ("\\x{}", "invalid escape sequence"),
    ("a{1001}", "invalid repeat count `{1001}`"),
    ("a{3,2}", "invalid repeat count `{3,2}`"),
    ("(a{100}){11}", "invalid repeat count `{11}`"),  # counts multiply through nesting
    ("((a{2}){2}b){251}", "invalid repeat count"),
    ("(?P<a-b>x)", "invalid named capture `(?P<a-b>`"),
    ("(?P<>x)", "invalid named capture"),
    ("(?P<a", "invalid named capture"),
    ("[z-a]", "invalid character class range `z-a`"),
    ("[a-\\d]", "invalid character class range"),
    ("[[:foo:]]", "invalid character class range `[:foo:]`"),
    ("\\p{Greek}", "invalid or unsupported Unicode class `\\p{Greek}`"),
    ("\\p{Foo}", "invalid or unsupported Unicode class"),
    ("\\pX", "invalid or unsupported Unicode class `\\pX`"),
    ("\\p{L", "invalid character class range"),
    ("(a", "missing closing )"),
    ("a)", "unexpected )"),
    ("[a", "missing closing ]"),
    ("[a-", "missing closing ]"),
    ("[]", "missing closing ]"),
    ("a\\", "trailing backslash at end of expression"),
])
def test_what_go_rejects(pattern: str, message: str) -> None:
    with pytest.raises(GoRegexError, match=re.escape(message)):
        goregex.compile(pattern)


def test_counts_that_go_allows() -> None:
    assert goregex.compile("(a{10}){100}")  # 1000: the limit itself
    assert goregex.compile("(a{2}b{500}){2}")
    assert goregex.compile("(a*){1000}(b+){1000}")


def test_error_says_what_where_and_in_which_pattern() -> None:
    with pytest.raises(GoRegexError) as err:
        goregex.compile("ab(?=c)")
    assert isinstance(err.value, ValueError)
    assert (err.value.reason, err.value.pattern, err.value.pos) == (
        "invalid or unsupported Perl syntax `(?=c)` (RE2 has no look-around)", "ab(?=c)", 2)
    assert str(err.value).endswith("at position 2 in `ab(?=c)`")
    # positions are in the caller's pattern, not in the anchored form
    with pytest.raises(GoRegexError, match=re.escape("`\\e` at position 2 in `ab\\e`")):
        goregex.compile("ab\\e", anchored=True)
    # `\` escapes the anchoring ")": Go reports the group left open, as here
    with pytest.raises(GoRegexError, match=re.escape("missing closing ) at position 1")):
        goregex.compile("\\", anchored=True, dotall=True)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert goregex.compile("(" * 200 + "a" + ")" * 200).search("a")
    for depth in (800, 1001, 5000):
        with pytest.raises(GoRegexError, match="nests too deeply"):
            goregex.compile("(" * depth + "a" + ")" * depth)


# --- Regexp.Expand ------------------------------------------------------------------------------


@pytest.mark.parametrize("template,expected", [
    ("$1x", "!"),  # Go reads "$1x" as the group named "1x", not as $1 and "x"
    ("${1}x", "fx"), ("$2", "oo"), ("${name}-$name", "oo-oo"), ("$$1", "$1"),
    ("$", "$"), ("$ 1", "$ 1"), ("${1", "${1"), ("${}", "${}"), ("a$", "a$"),
    ("$01", ""),  # a leading zero is no number: the (missing) group named "01"
    ("$0", "foo!?"), ("$3", "!"), ("$4", ""), ("$5", "?"), ("$6", ""), ("$123456789", ""),
    ("$1$2", "foo"), ("$dup", "?"),  # a name used twice: the first group that took part
    ("$nope", ""), ("plain", "plain"), ("", ""),
])
def test_template_expands_as_go(template: str, expected: str) -> None:
    regex = goregex.compile("(f)(?P<name>o*)(?P<1x>!?)(?P<dup>x)?(?P<dup>\\?)?")
    assert Template(template, regex).expand(regex.search("foo!?")) == expected


# --- Go as the oracle -----------------------------------------------------------------------------

_ORACLE_GO = """package main

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req struct {
			P string
			S []string
		}
		if json.Unmarshal(in.Bytes(), &req) != nil {
			os.Exit(2)
		}
		re, err := regexp.Compile(req.P)
		if err != nil {
			out.Encode(map[string]any{"err": err.Error()})
			continue
		}
		found := [][]int{}
		for _, s := range req.S {
			found = append(found, re.FindStringSubmatchIndex(s))
		}
		out.Encode(map[string]any{"m": found, "names": re.SubexpNames()})
	}
}
"""

_ATOMS = ["a", "b", "A", "k", "K", "s", "\u017f", "\u212a", "é", "É", "1", " ", "_", "-", "\\n",
          ".", "[a-c]", "[^a]", "[[:alpha:]]", "[[:^space:]]", "\\d", "\\w", "\\s", "\\D", "\\W",
          "\\S", "\\b", "\\B", "\\pL", "\\p{Lu}", "\\PN", "\\p{^Ll}", "^", "$", "\\A", "\\z",
          "[\\d-]", "[^\\n]", "[]a]", "\\x41", "\\101", "\\0", "\\Qa.\\E", "{", "}", "{,2}",
          "a{01}", "[k]", "[^k]", "[^\\w]", "[\\W]", "\\.", "\\Q\\E", "\\", ")", "(", "[",
          "\\x{212A}", "[[:upper:]]", "[^[:lower:]]", "\\p{Any}", "(?=a)", "\\1", "\\Z", "[z-a]"]
_REPEATS = ["*", "+", "?", "*?", "+?", "??", "{2}", "{1,2}", "{0,}", "{2,}?", "{0}", "**", "*+"]
_FLAGS = ["(?i)", "(?s)", "(?m)", "(?U)", "(?-i)", "(?i-s)", "(?)", "(?-)"]
_GROUPS = ["(", "(?:", "(?i:", "(?s:", "(?m:", "(?-i:", "(?U:", "(?P<n>", "(?P<1x>"]
_TEXT = "aAbBkK\u212as\u017fS\né1 _-.{},É"


def _pattern(rng: random.Random, depth: int = 0) -> str:
    out = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.12 and depth < 3:
            out.append(rng.choice(_GROUPS) + _pattern(rng, depth + 1) + ")")
        elif r < 0.18:
            out.append(rng.choice(_FLAGS))
        elif r < 0.24:
            out.append("|")
        else:
            out.append(rng.choice(_ATOMS))
        if rng.random() < 0.3:
            out.append(rng.choice(_REPEATS))
    return "".join(out)


@pytest.fixture(scope="module")
def go_regexp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    if not GO:
        pytest.skip("needs the Go toolchain (`go`, Debian package golang-go) as the oracle")
    work = tmp_path_factory.mktemp("goregex")
    (work / "main.go").write_text(_ORACLE_GO)
    env = {**os.environ, "HOME": str(work), "GOCACHE": str(work / "cache"),
           "GOPATH": str(work / "gopath"), "GO111MODULE": "off", "GOFLAGS": "",
           "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    build = subprocess.run([GO, "build", "-o", str(work / "oracle"), str(work / "main.go")],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.skip(f"go build of the oracle failed: {build.stderr.strip()[:500]}")
    proc = subprocess.Popen([str(work / "oracle")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait(timeout=10)


def _ask_go(proc: subprocess.Popen[str], pattern: str, texts: list[str]) -> dict[str, Any]:
    proc.stdin.write(json.dumps({"P": pattern, "S": texts}) + "\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    return json.loads(proc.stdout.readline())  # type: ignore[union-attr]


def _ours(pattern: str, texts: list[str], anchored: bool, dotall: bool) -> dict[str, Any]:
    try:
        regex = goregex.compile(pattern, anchored=anchored, dotall=dotall)
    except GoRegexError as exc:
        return {"err": str(exc)}
    found: list[list[int] | None] = []
    for text in texts:
        m = regex.search(text)
        # Go reports byte offsets into the UTF-8 text
        found.append(None if m is None else [
            len(text[:i].encode()) if i >= 0 else -1 for g in range(regex.groups + 1)
            for i in m.span(g)])
    return {"m": found, "names": subexp_names(regex)}


def test_generated_patterns_agree_with_go(go_regexp: subprocess.Popen[str]) -> None:
    rng = random.Random(20250701)
    disagreements, accepted = [], 0
    for _ in range(2500):
        pattern = _pattern(rng)
        anchored, dotall = rng.choice([(False, False), (True, True), (True, False)])
        go_form = ("^(?s:" if dotall else "^(?:") + pattern + ")$" if anchored else pattern
        texts = ["".join(rng.choice(_TEXT) for _ in range(rng.randint(0, 8))) for _ in range(6)]
        theirs = _ask_go(go_regexp, go_form, texts)
        ours = _ours(pattern, texts, anchored, dotall)
        accepted += "m" in theirs
        if ("err" in theirs) != ("err" in ours):
            disagreements.append((go_form, theirs, ours))
        elif "err" in theirs:
            # the same reason (Go: "error parsing regexp: <reason>: `<text>`")
            reason = theirs["err"].removeprefix("error parsing regexp: ").rsplit(": `", 1)[0]
            if reason not in ours["err"]:
                disagreements.append((go_form, theirs, ours))
        elif theirs != ours:
            disagreements.append((go_form, texts, theirs, ours))
    assert not disagreements, disagreements[:5]
    assert 800 < accepted < 2400  # both kinds are exercised


def test_case_folding_orbits_agree_with_go(go_regexp: subprocess.Popen[str]) -> None:
    # (?i) on every letter Go folds: each one's class must match the same code points.
    sample = [chr(c) for c in range(0x41, 0x2000)
              if chr(c).isalpha() and chr(c).lower() != chr(c).upper()]
    for ch in sample[::7]:
        candidates = sorted({ch, ch.lower(), ch.upper(), ch.casefold()[:1], "\u212a",
                             "\u017f", "\u0131", "\u0130", "k", "s", "i"})
        theirs = _ask_go(go_regexp, f"^(?i:{ch})$", candidates)
        ours = _ours(f"(?i:{ch})", candidates, anchored=True, dotall=False)
        assert theirs["m"] == ours["m"], (ch, candidates)
