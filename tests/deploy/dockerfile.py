"""A small Dockerfile reader for the tests: the instructions of each stage, as Docker parses them
(continuation lines joined, comments dropped, JSON exec forms decoded), so the tests run exactly
the commands the image runs."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILES = (DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda")


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, CMD, ...
    text: str  # the rest of the line, continuations joined
    comments: list[str] = field(default_factory=list)  # the comment lines just above it

    def exec_form(self) -> list[str]:
        """The JSON exec form (``["a", "b"]``) of CMD / ENTRYPOINT / HEALTHCHECK CMD."""
        text = self.text
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + len(" CMD "):] if " CMD " in text else text.removeprefix("CMD ")
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self.text
        return value

    def flags(self) -> dict[str, str]:
        """Leading ``--name=value`` flags (``COPY --from=x``, ``RUN --mount=...``)."""
        out = {}
        for word in shlex.split(self.text):
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            out[name] = value
        return out

    def operands(self) -> list[str]:
        """The words after the leading flags (``COPY`` sources and destination)."""
        words = shlex.split(self.text)
        while words and words[0].startswith("--"):
            words.pop(0)
        return words

    def command(self) -> str:
        """A RUN's shell command, without its ``--mount`` flags."""
        return re.sub(r"^(--\S+\s+)+", "", self.text)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def args(self) -> dict[str, str]:
        """The stage's ``ARG name=default`` values."""
        out = {}
        for i in self.all("ARG"):
            name, _, default = i.text.partition("=")
            out[name] = default
        return out

    def env(self) -> dict[str, str]:
        """The stage's ``ENV`` values (``key=value`` pairs; ``$PATH``-style values unexpanded)."""
        out = {}
        for i in self.all("ENV"):
            for word in shlex.split(i.text):
                key, _, value = word.partition("=")
                out[key] = value
        return out


@dataclass
class Dockerfile:
    path: Path
    preamble: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"{self.path} has no stage {name!r}: {[s.name for s in self.stages]}")

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self, stage: str) -> dict[str, str]:
        """ENV values seen in ``stage``: those of the stages it is built FROM, then its own."""
        s = self.stage(stage)
        names = [s.name for s in self.stages]
        inherited = self.env(s.base) if s.base in names else {}
        return {**inherited, **s.env()}


def parse(path: Path) -> Dockerfile:
    """Read a Dockerfile into its stages."""
    lines = path.read_text(encoding="utf-8").splitlines()
    instructions: list[Instruction] = []
    comments: list[str] = []
    pending = ""
    for raw in lines:
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            comments = comments + [line.lstrip("# ")] if line else []
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, text = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), text.strip(), comments))
        comments = []
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.text.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0], []))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            preamble.append(ins)
    return Dockerfile(path, preamble, stages)
