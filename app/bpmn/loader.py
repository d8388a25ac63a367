"""Load and validate BPMN 2.0 files with SpiffWorkflow's parser.

Every refusal is a `Problem` naming file, line, element id and what is wrong; nothing
the parser raises escapes as a traceback. The XML is parsed by a hardened lxml parser
(no DTDs, no entities, no network) before SpiffWorkflow sees it.
"""
import hashlib
from dataclasses import dataclass, field

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptTask
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from app.bpmn import limits, timers
from app.bpmn.errors import BpmnRefused, Problem
from app.bpmn.scripting import ScriptRejected, compile_code

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
NS = {"bpmn": BPMN_NS}

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                              dtd_validation=False, huge_tree=False)


@dataclass
class LoadedProcess:
    key: str
    name: str
    spec: object
    subprocess_specs: dict
    # Timer element id -> message names that restart it (extension property restartOn).
    restart_on: dict = field(default_factory=dict)


@dataclass
class LoadedFile:
    filename: str
    content_hash: str
    processes: list[LoadedProcess] = field(default_factory=list)


def content_hash(xml: bytes) -> str:
    return hashlib.sha256(xml).hexdigest()


def parse_xml(xml: bytes, filename: str) -> etree._ElementTree:
    """Parse with no DTD, entity or network access; refuse documents that declare any."""
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        line = xml[: xml.find(b"<!")].count(b"\n") + 1
        raise BpmnRefused([Problem(filename, line, "", "DTDs and entity declarations are not allowed in BPMN files")])
    try:
        tree = etree.ElementTree(etree.fromstring(xml, _XML_PARSER))
    except etree.XMLSyntaxError as e:
        raise BpmnRefused([Problem(filename, e.lineno, "", f"malformed XML: {e.msg}")]) from None
    root = tree.getroot()
    if root.tag != f"{{{BPMN_NS}}}definitions":
        raise BpmnRefused([Problem(filename, root.sourceline, root.get("id", ""),
                                   f"not a BPMN 2.0 file: the root element is {etree.QName(root).localname!r}, "
                                   "expected bpmn:definitions")])
    return tree


class _Checker:
    """Checks SpiffWorkflow does not make at parse time, with line numbers it cannot give."""

    def __init__(self, tree, filename: str, operations: set[str] | None, check_scripts: bool = True):
        self.tree, self.filename, self.operations = tree, filename, operations
        self.check_scripts = check_scripts
        self.lines = {el.get("id"): el.sourceline for el in tree.iter() if isinstance(el.tag, str) and el.get("id")}
        self.problems: list[Problem] = []

    def add(self, element_id: str, problem: str, line: int | None = None):
        self.problems.append(Problem(self.filename, line or self.lines.get(element_id), element_id or "", problem))

    def normalise_timers(self):
        for definition in self.tree.iterfind(".//bpmn:timerEventDefinition", NS):
            event_id = definition.getparent().get("id", "")
            texts = [c for c in definition if etree.QName(c).localname in timers.KINDS]
            if not texts or not (texts[0].text or "").strip():
                self.add(event_id, "empty timer definition: give a timeDuration, timeDate or timeCycle",
                         definition.sourceline)
                continue
            kind = etree.QName(texts[0]).localname
            expression, literal = timers.normalise(kind, texts[0].text)
            if not literal:
                try:
                    compile_code(expression, "eval")
                except ScriptRejected as e:
                    self.add(event_id, f"timer text {texts[0].text.strip()!r} is neither ISO 8601 "
                                       f"nor a valid expression: {e}", texts[0].sourceline)
                    continue
            texts[0].text = expression

    def restart_rules(self) -> dict[str, frozenset]:
        """Timers that restart when a message arrives: an extension property `restartOn` on the
        timer event (spiffworkflow:, camunda: or zeebe: property; several names space-separated).
        A timer after an event-based gateway restarts through the gateway, which holds its due time."""
        rules: dict[str, set] = {}
        for definition in self.tree.iterfind(".//bpmn:timerEventDefinition", NS):
            event = definition.getparent()
            names = {name for prop in event.iter() if isinstance(prop.tag, str)
                     and etree.QName(prop).localname == "property" and prop.get("name") == "restartOn"
                     for name in (prop.get("value") or "").replace(",", " ").split()}
            if not names:
                continue
            rules.setdefault(event.get("id"), set()).update(names)
            for flow in self.tree.iterfind(f".//bpmn:sequenceFlow[@targetRef='{event.get('id')}']", NS):
                source = self.tree.find(f".//*[@id='{flow.get('sourceRef')}']")
                if source is not None and etree.QName(source).localname == "eventBasedGateway":
                    rules.setdefault(source.get("id"), set()).update(names)
        return {element: frozenset(names) for element, names in rules.items()}

    def check_flows(self):
        for process in self.tree.iterfind(".//bpmn:process", NS):
            ids = {el.get("id") for el in process.iter() if isinstance(el.tag, str) and el.get("id")}
            for flow in process.iter(f"{{{BPMN_NS}}}sequenceFlow"):
                for end in ("sourceRef", "targetRef"):
                    ref = flow.get(end)
                    if not ref or ref not in ids:
                        self.add(flow.get("id", ""), f"sequence flow {end} {ref!r} names no element of "
                                                     f"process {process.get('id')!r}", flow.sourceline)

    # What SpiffWorkflow 3.2 throws from an end event; it parses any other definition there as a
    # plain end, so a signal end event would end its branch without a word.
    END_EVENT_THROWS = ("messageEventDefinition", "errorEventDefinition", "escalationEventDefinition",
                        "cancelEventDefinition", "terminateEventDefinition")

    def check_events(self):
        """Events SpiffWorkflow would drop silently: a boundary event attached to no activity of its
        process, an end event throwing what it cannot throw."""
        for process in self.tree.iterfind(".//bpmn:process", NS):
            activities = {el.get("id") for el in process.iter() if isinstance(el.tag, str) and el.get("id")
                          and etree.QName(el).localname.endswith(("Task", "task", "subProcess", "callActivity",
                                                                  "transaction"))}
            for event in process.iter(f"{{{BPMN_NS}}}boundaryEvent"):
                if event.get("attachedToRef") not in activities:
                    self.add(event.get("id", ""), f"boundary event is attached to {event.get('attachedToRef')!r}, "
                                                  f"which is no activity of process {process.get('id')!r}",
                             event.sourceline)
            for event in process.iter(f"{{{BPMN_NS}}}endEvent"):
                for definition in event:
                    kind = etree.QName(definition).localname if isinstance(definition.tag, str) else ""
                    if kind.endswith("EventDefinition") and kind not in self.END_EVENT_THROWS:
                        self.add(event.get("id", ""), f"an end event cannot throw a {kind[:-len('EventDefinition')]} "
                                                      "event here (SpiffWorkflow would end the branch without "
                                                      "throwing it): throw it with an intermediate throw event "
                                                      "before a plain end event", definition.sourceline)

    def check_conditions(self):
        for condition in self.tree.iterfind(".//bpmn:conditionExpression", NS):
            text = (condition.text or "").strip()
            flow_id = condition.getparent().get("id", "")
            if text.startswith("${") or text.startswith("#{"):
                self.add(flow_id, f"condition {text!r} is a Camunda JUEL expression; write a Python expression "
                                  "over process data instead (for example: approved == True)", condition.sourceline)
            elif text:
                condition.text = text[1:].strip() if text.startswith("=") else text
                self._compile(flow_id, "condition", condition.text, "eval", condition.sourceline)

    def check_call_activities(self):
        calls = {p.get("id"): [c for c in p.iter(f"{{{BPMN_NS}}}callActivity")]
                 for p in self.tree.iterfind(".//bpmn:process", NS)}
        for key, activities in calls.items():
            for call in activities:
                called = call.get("calledElement")
                if not called:
                    self.add(call.get("id", ""), "call activity names no process to call (calledElement is missing)",
                             call.sourceline)
                elif called not in calls:
                    self.add(call.get("id", ""), f"call activity calls process {called!r}, which is not in this "
                                                 "file (a called process must be deployed in the same file)",
                             call.sourceline)
                elif (path := _call_path(calls, called, key)) is not None:
                    self.add(call.get("id", ""), f"call activity reaches its own process {key} "
                                                 f"({' -> '.join([key, *path])}): recursion is not supported",
                             call.sourceline)

    def check_code(self, spec):
        for task_spec in spec.task_specs.values():
            element = getattr(task_spec, "bpmn_id", None) or task_spec.name
            sources = []
            if isinstance(task_spec, ScriptTask):
                sources.append(("script", task_spec.script, "exec"))
            sources += [("preScript", getattr(task_spec, "prescript", None), "exec"),
                        ("postScript", getattr(task_spec, "postscript", None), "exec")]
            for name, source, mode in sources:
                if source:
                    self._compile(element, name, source, mode)
            self._check_operation(element, task_spec)
            self._check_gateway_timers(element, task_spec)

    def _compile(self, element, what, source, mode, line=None):
        if not self.check_scripts:
            return
        try:
            compile_code(source, mode)
        except ScriptRejected as e:
            self.add(element, f"{what} refused: {e}", line)

    def at_line(self, line) -> str:
        """The id of the first element on `line`, or of its nearest ancestor that has one."""
        for el in self.tree.iter():
            if isinstance(el.tag, str) and el.sourceline == line:
                while el is not None and not el.get("id"):
                    el = el.getparent()
                return el.get("id", "") if el is not None else ""
        return ""

    def locate(self, message: str) -> str:
        """The id of the element a parser message speaks of, found by its id or name."""
        for el in self.tree.iter():
            if not isinstance(el.tag, str):
                continue
            for value in (el.get("id"), el.get("name")):
                if value and (f"'{value}'" in message or f"name {value} " in message):
                    return el.get("id") or ""
        return ""

    def _check_operation(self, element, task_spec):
        name = getattr(task_spec, "operation_name", None)
        if name is None:
            return
        if self.operations is not None and name not in self.operations:
            known = ", ".join(sorted(self.operations)) or "none"
            self.add(element, f"service task calls unknown operation {name!r} (known: {known})")
        for param, spec in (getattr(task_spec, "operation_params", None) or {}).items():
            value = spec.get("value") if isinstance(spec, dict) else None
            if value:
                self._compile(element, f"parameter {param!r}", value, "eval")

    def _check_gateway_timers(self, element, task_spec):
        definition = getattr(task_spec, "event_definition", None)
        if isinstance(definition, MultipleEventDefinition):
            found = [d for d in definition.event_definitions if isinstance(d, TimerEventDefinition)]
            if len(found) > 1:
                self.add(element, "an event-based gateway may wait on one timer only "
                                  "(SpiffWorkflow 3.2 makes several share one due time)")


def _call_path(calls: dict, start: str, goal: str) -> list[str] | None:
    """The processes a call into `start` goes through until it calls `goal`, None if it never does.

    Calls only ever reach processes of the same file, so the file alone decides recursion."""
    seen, stack = set(), [(start, [start])]
    while stack:
        key, path = stack.pop()
        if key == goal:
            return path
        if key in seen:
            continue
        seen.add(key)
        stack.extend((c.get("calledElement"), path + [c.get("calledElement")]) for c in calls.get(key, ())
                     if c.get("calledElement") in calls)
    return None


def _keep_start_unchanged(spec) -> None:
    """SpiffWorkflow 3.2 starts an event subprocess by connecting it to the process's start
    task, in the spec itself, and never disconnects it. Specs are parsed once per version and
    shared by all its instances, so after one instance ran the subprocess every new instance
    started it at once and could never complete. The start task forgets it again each time."""
    start = spec.start
    if not getattr(start, "trigger_specs", None) or getattr(start, "_chatflow_guarded", False):
        return
    trigger = start.trigger_wf

    def trigger_wf(my_task, spec_name):
        outputs = list(start._outputs)
        try:
            return trigger(my_task, spec_name)
        finally:
            # The subprocess keeps its own links (it needs an input to run, and connects once);
            # only the start task forgets it, so new instances do not start it.
            start._outputs = outputs

    start.trigger_wf = trigger_wf
    start._chatflow_guarded = True


def _limit_multi_instances(spec) -> None:
    """SpiffWorkflow makes a task per item of a multi-instance at once (a cardinality of ten
    million is ten million tasks); its size is checked against the limit before."""
    for task_spec in spec.task_specs.values():
        if not isinstance(task_spec, MultiInstanceTask) or getattr(task_spec, "_chatflow_limited", False):
            continue

        def limited(my_task, task_spec=task_spec, update=task_spec._update_hook):
            my_task._inherit_data()  # what SpiffWorkflow's hook does first: the size may come from data
            if task_spec.data_input is not None:
                items = task_spec.data_input.get(my_task) if task_spec.data_input.exists(my_task) else None
                count, what = (len(items), "a multi-instance collection") if hasattr(items, "__len__") else (0, "")
            else:
                count = my_task.workflow.script_engine.evaluate(my_task, task_spec.cardinality)
                what = "a multi-instance cardinality"
            if isinstance(count, int):
                limits.check_size(count, what, element=task_spec.bpmn_id)
            return update(my_task)

        task_spec._update_hook = limited
        task_spec._chatflow_limited = True


def load(xml: bytes, filename: str, operations: set[str] | None = None, check_scripts: bool = True) -> LoadedFile:
    """Parse and validate one BPMN file; return its executable processes.

    Args:
        xml: the file's bytes, as uploaded.
        filename: the name used in every problem message.
        operations: the service-task operations Chatflow offers; None skips that check.
        check_scripts: False for a version deployed before: a script refused by today's rules
            fails its own instances when it runs, and leaves the version's other instances be.
    Raises:
        BpmnRefused: with every problem found.
    """
    tree = parse_xml(xml, filename)
    checker = _Checker(tree, filename, operations, check_scripts)
    checker.normalise_timers()
    checker.check_flows()
    checker.check_events()
    checker.check_conditions()
    checker.check_call_activities()
    if checker.problems:
        raise BpmnRefused(checker.problems)

    parser = SpiffBpmnParser(validator=VALIDATOR)
    result = LoadedFile(filename, content_hash(xml))
    try:
        parser.add_bpmn_xml(tree, filename=filename)
        keys = parser.get_process_ids()
        if not keys:
            raise BpmnRefused([Problem(filename, tree.getroot().sourceline, tree.getroot().get("id", ""),
                                       "the file has no executable process (every process has "
                                       "isExecutable=\"false\"): nothing to deploy")])
        for key in keys:
            spec = parser.get_spec(key)
            subprocess_specs = parser.get_subprocess_specs(key)
            for one in (spec, *subprocess_specs.values()):
                checker.check_code(one)
                _keep_start_unchanged(one)
                _limit_multi_instances(one)
            name = tree.find(f".//bpmn:process[@id='{key}']", NS).get("name") or key
            result.processes.append(LoadedProcess(key, name, spec, subprocess_specs, checker.restart_rules()))
    except BpmnRefused:
        raise
    except ValidationException as e:
        element_id = getattr(e, "id", "") or checker.locate(str(e))
        line = getattr(e, "line_number", None) or checker.lines.get(element_id)
        element_id = element_id or (checker.at_line(line) if isinstance(line, int) else "")
        tag = getattr(e, "tag", "")
        what = f"{tag}: " if tag and tag not in str(e) else ""
        raise BpmnRefused([Problem(filename, line if isinstance(line, int) else None, element_id,
                                   f"{what}{e}".strip())]) from None
    except Exception as e:  # the parser's own failures on odd input must still be precise
        raise BpmnRefused([Problem(filename, None, "", f"could not be parsed: {type(e).__name__}: {e}")]) from None
    if checker.problems:
        raise BpmnRefused(checker.problems)
    return result


def parse_specs(xml: bytes, filename: str, key: str) -> LoadedProcess:
    """One process key of a stored, already validated file, parsed."""
    for process in load(xml, filename, check_scripts=False).processes:
        if process.key == key:
            return process
    raise KeyError(key)
