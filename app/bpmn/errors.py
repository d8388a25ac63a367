from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One reason a BPMN file is refused: where it is and what is wrong."""

    file: str
    line: int | None
    element_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line or '?'} {self.element_id or '-'} {self.problem}"

    def as_dict(self) -> dict:
        return asdict(self)


class BpmnRefused(Exception):
    """A file could not be deployed; `problems` says every reason found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
