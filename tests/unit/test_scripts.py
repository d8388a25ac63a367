"""Analysts' scripts run as Python: a corpus of typical scripts, each deployed in a script task
and run by SpiffWorkflow with the restricted engine, with the data expected afterwards; and every
construct that stays refused, refused at deploy with the reason."""
from datetime import datetime, timezone
from xml.sax.saxutils import escape

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from app.bpmn.errors import BpmnRefused
from app.bpmn.loader import load
from app.bpmn.scripting import RestrictedEnvironment, ScriptEngine

OPERATORS = [{"name": "anna", "chats": 2}, {"name": "boris", "chats": 0}, {"name": "clara", "chats": 1}]
CONTACTS = [{"id": 7, "name": "Ivan", "vip": True}, {"id": 9, "name": "Olga", "vip": False}]

# (script, data before, what the data holds afterwards: only the keys the script sets or changes)
CORPUS = [
    ("x, y = 1, 2", {}, {"x": 1, "y": 2}),
    ("in_1, in_2, unused = 1, 'hello world', True", {}, {"in_1": 1, "in_2": "hello world", "unused": True}),
    ("first, *rest = Tags", {"Tags": ["a", "b", "c"]}, {"first": "a", "rest": ["b", "c"]}),
    ("*init, last = Tags", {"Tags": ["a", "b", "c"]}, {"init": ["a", "b"], "last": "c"}),
    ("a, b = b, a", {"a": 1, "b": 2}, {"a": 2, "b": 1}),
    ("total = 0\nfor name, qty in Items:\n    total += qty", {"Items": [["tea", 2], ["cake", 3]]},
     {"total": 5, "name": "cake", "qty": 3}),
    ("Counters['sent'] += 1", {"Counters": {"sent": 4}}, {"Counters": {"sent": 5}}),
    ("Stats['by_queue']['sales'] += 2\nStats['by_queue']['support'] -= 1",
     {"Stats": {"by_queue": {"sales": 1, "support": 3}}}, {"Stats": {"by_queue": {"sales": 3, "support": 2}}}),
    ("Chat['tags'] += ['vip']", {"Chat": {"tags": ["new"]}}, {"Chat": {"tags": ["new", "vip"]}}),
    ("Scores[0] *= 10\nScores[-1] //= 2", {"Scores": [3, 9]}, {"Scores": [30, 4]}),
    ("Greeting += ', welcome'\nCount *= 3", {"Greeting": "Hello", "Count": 2},
     {"Greeting": "Hello, welcome", "Count": 6}),
    ("seen = set(Seen)\nseen |= {'faq'}\nseen.add('price')\nSeen = sorted(seen)\ndel seen",
     {"Seen": ["intro"]}, {"Seen": ["faq", "intro", "price"]}),
    ("Vip = [c['name'] for c in Contacts if c['vip']]", {"Contacts": CONTACTS}, {"Vip": ["Ivan"]}),
    ("ByName = {c['name']: c['id'] for c in Contacts}", {"Contacts": CONTACTS}, {"ByName": {"Ivan": 7, "Olga": 9}}),
    ("Ids = sorted({c['id'] % 2 for c in Contacts})", {"Contacts": CONTACTS}, {"Ids": [1]}),
    ("Total = sum(i['price'] * i['qty'] for i in Items)", {"Items": [{"price": 2.5, "qty": 2}, {"price": 1, "qty": 3}]},
     {"Total": 8.0}),
    ("Subject = f\"Chat {ChatId} from {Contact['name']}\"", {"ChatId": 12, "Contact": {"name": "Ivan"}},
     {"Subject": "Chat 12 from Ivan"}),
    ("Amount = f'{Price:.2f} EUR'\nCode = f'{Number:06d}'", {"Price": 3.5, "Number": 42},
     {"Amount": "3.50 EUR", "Code": "000042"}),
    ("Ordered = [o['name'] for o in sorted(Operators, key=lambda o: o['chats'])]", {"Operators": OPERATORS},
     {"Ordered": ["boris", "clara", "anna"]}),
    ("Least = min(Operators, key=lambda o: (o['chats'], o['name']))['name']", {"Operators": OPERATORS},
     {"Least": "boris"}),
    ("Busiest = max(Operators, key=lambda o: o['chats'])['name']", {"Operators": OPERATORS}, {"Busiest": "anna"}),
    ("Level = Settings.get('level', 'basic')\nKeys = sorted(Settings.keys())\nSettings.update({'lang': 'en'})\n"
     "Old = Settings.pop('old', None)\nSettings.setdefault('tz', 'UTC')",
     {"Settings": {"old": 1, "x": 2}},
     {"Level": "basic", "Keys": ["old", "x"], "Old": 1, "Settings": {"x": 2, "lang": "en", "tz": "UTC"}}),
    ("Queue.append('c')\nQueue.extend(['d', 'e'])\nQueue.insert(0, 'z')\nQueue.remove('b')\nTop = Queue.pop()\n"
     "Where = Queue.index('c')\nQueue.sort(reverse=True)", {"Queue": ["a", "b"]},
     {"Queue": ["z", "d", "c", "a"], "Top": "e", "Where": 2}),
    ("Common = sorted(set(A) & set(B))\nOnlyA = sorted(set(A).difference(B))\nBoth = sorted(set(A).union(B))",
     {"A": [1, 2, 3], "B": [2, 3, 4]}, {"Common": [2, 3], "OnlyA": [1], "Both": [1, 2, 3, 4]}),
    ("Short = Text[:5]\nLast = Items[-2:]\nBackwards = Text[::-1]\nEvery = Items[::2]",
     {"Text": "Hello world", "Items": [1, 2, 3, 4]},
     {"Short": "Hello", "Last": [3, 4], "Backwards": "dlrow olleH", "Every": [1, 3]}),
    ("IsVip = 'vip' in Tags\nIsNew = 'new' not in Tags\nHasWord = 'price' in Text.lower()",
     {"Tags": ["vip"], "Text": "What is the PRICE?"}, {"IsVip": True, "IsNew": True, "HasWord": True}),
    ("InHours = 9 <= Hour < 18\nOrdered = 1 < 2 < 3 > 2", {"Hour": 20}, {"InHours": False, "Ordered": True}),
    ("try:\n    Phone = Contact['phone']\nexcept KeyError:\n    Phone = None", {"Contact": {}}, {"Phone": None}),
    ("try:\n    Age = int(Raw)\nexcept (ValueError, TypeError) as e:\n    Age = -1\n    Why = str(e)",
     {"Raw": "ten"}, {"Age": -1, "Why": "invalid literal for int() with base 10: 'ten'"}),
    ("try:\n    q = Total / Count\nexcept ZeroDivisionError:\n    q = 0\nelse:\n    q = round(q, 1)\n"
     "finally:\n    Checked = True", {"Total": 10, "Count": 3}, {"q": 3.3, "Checked": True}),
    ("if Waiting > 10:\n    Priority = 'high'\nelif Waiting > 3:\n    Priority = 'normal'\nelse:\n    Priority = 'low'",
     {"Waiting": 5}, {"Priority": "normal"}),
    ("Label = 'vip' if Contact.get('vip') else 'regular'", {"Contact": {"vip": True}}, {"Label": "vip"}),
    ("n = 0\nwhile n < 5:\n    n += 1", {}, {"n": 5}),
    ("Found = None\nfor c in Contacts:\n    if not c['vip']:\n        continue\n    Found = c['name']\n    break",
     {"Contacts": CONTACTS}, {"Found": "Ivan", "c": CONTACTS[0]}),
    ("def score(o):\n    return o['chats'] * 2 + 1\nScores = [score(o) for o in Operators]", {"Operators": OPERATORS},
     {"Scores": [5, 1, 3]}),
    ("Name = Raw.strip().title()\nParts = Line.split(',')\nJoined = '-'.join(Parts)\nClean = Line.replace(',', ' ')\n"
     "IsCmd = Raw.strip().startswith('/')", {"Raw": "  ivan petrov ", "Line": "a,b,c"},
     {"Name": "Ivan Petrov", "Parts": ["a", "b", "c"], "Joined": "a-b-c", "Clean": "a b c", "IsCmd": False}),
    ("Due = (datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=30)).isoformat()", {},
     {"Due": "2030-01-01T00:30:00+00:00"}),
    ("Pages = math.ceil(Count / 10)\nRoot = math.sqrt(16)", {"Count": 41}, {"Pages": 5, "Root": 4.0}),
    ("Pairs = [f'{i}:{n}' for i, n in enumerate(Names, 1)]\nMerged = dict(zip(Keys, Values))",
     {"Names": ["a", "b"], "Keys": ["x", "y"], "Values": [1, 2]},
     {"Pairs": ["1:a", "2:b"], "Merged": {"x": 1, "y": 2}}),
    ("AnyVip = any(c['vip'] for c in Contacts)\nAllVip = all(c['vip'] for c in Contacts)", {"Contacts": CONTACTS},
     {"AnyVip": True, "AllVip": False}),
    ("h, m = divmod(Minutes, 60)\nText = f'{h}h {m:02d}m'\nGap = abs(-3)", {"Minutes": 125},
     {"h": 2, "m": 5, "Text": "2h 05m", "Gap": 3}),
    ("IsList = isinstance(Value, list)\nIsText = isinstance(Value, str)", {"Value": [1]},
     {"IsList": True, "IsText": False}),
    ("Case['history'].append({'event': 'created', 'by': OperatorId})", {"Case": {"history": []}, "OperatorId": 3},
     {"Case": {"history": [{"event": "created", "by": 3}]}}),
    ("Evens = list(filter(lambda x: x % 2 == 0, Numbers))\nDoubled = list(map(lambda x: x * 2, Numbers))",
     {"Numbers": [1, 2, 3, 4]}, {"Evens": [2, 4], "Doubled": [2, 4, 6, 8]}),
    ("Count = len(Items)\nLabel = str(Count) + ' items'\nAsInt = int('7') + float('0.5')", {"Items": [1, 2]},
     {"Count": 2, "Label": "2 items", "AsInt": 7.5}),
    ("print('routing chat', ChatId)\nRouted = True", {"ChatId": 1}, {"Routed": True}),
    ("by = lambda o: o['chats']\nTop = max(Operators, key=by)['name']", {"Operators": OPERATORS}, {"Top": "anna"}),
    ("Top2 = [k for k, v in sorted(Votes.items(), key=lambda kv: kv[1], reverse=True)[:2]]",
     {"Votes": {"a": 1, "b": 5, "c": 3}}, {"Top2": ["b", "c"]}),
    ("Payload = {**Base, 'extra': 1}", {"Base": {"a": 1}}, {"Payload": {"a": 1, "extra": 1}}),
    ("Label = 'Chat %d for %s' % (ChatId, Name)", {"ChatId": 5, "Name": "Olga"}, {"Label": "Chat 5 for Olga"}),
    ("First = Items[0] if Items else None\nNone_ = None", {"Items": []}, {"First": None, "None_": None}),
    ("if (n := len(Text)) > 3:\n    Long = n", {"Text": "hello"}, {"n": 5, "Long": 5}),
    ("Upper = getattr(Text, 'upper')()\nHas = hasattr(Text, 'lower')", {"Text": "ok"}, {"Upper": "OK", "Has": True}),
    ("Matrix = [[r * c for c in range(3)] for r in range(2)]", {}, {"Matrix": [[0, 0, 0], [0, 1, 2]]}),
]

# (script, the reason given at deploy)
REFUSED = [
    ("import os", "imports are not allowed in BPMN scripts"),
    ("from datetime import date", "imports are not allowed in BPMN scripts"),
    ("x = __import__('os')", '"__import__" is an invalid variable name because it starts with "_"'),
    ("x = ().__class__.__bases__", '"__class__" is an invalid attribute name because it starts with "_"'),
    ("_secret = 1", '"_secret" is an invalid variable name because it starts with "_"'),
    ("x = locals()", "locals() is not allowed in scripts: scripts read and set process data by name"),
    ("x = globals()['ChatId']", "globals() is not allowed in scripts: scripts read and set process data by name"),
    ("x = vars()", "vars() is not allowed in scripts"),
    ("x = eval('1 + 1')", "eval() is not allowed in scripts: code made from text at run time cannot be checked"),
    ("exec('x = 1')", "exec() is not allowed in scripts: code made from text at run time cannot be checked"),
    ("x = open('/etc/passwd').read()", "open() is not allowed in scripts: scripts have no files or network"),
    ("x = getattr(Contact, field)", "getattr() with a computed attribute name is not allowed in scripts"),
    ("setattr(Contact, field, 1)", "setattr() with a computed attribute name is not allowed in scripts"),
    ("x = getattr(Contact, '__dict__')", '"__dict__" is an invalid variable name because it starts with "_"'),
    ("class Case:\n    pass", "class definitions are not allowed in scripts"),
    ("try:\n    x = 1\nexcept:\n    x = 2", "a bare except: is not allowed in scripts: it would also catch the "
                                          "engine stopping a runaway script"),
    ("try:\n    x = 1\nexcept BaseException:\n    x = 2", "BaseException is not allowed in scripts"),
    ("while True:\n    try:\n        pass\n    finally:\n        continue",
     "continue inside finally is not allowed in scripts"),
    ("x = type(ChatId)", "type() is not allowed in scripts: objects' types are not data"),
    ("x = = 1", "invalid syntax"),
]


def script_process(script: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="Script" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:scriptTask id="work"><bpmn:script>{escape(script)}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
""".encode()


def run(script: str, data: dict) -> dict:
    """Deploy-check the script in a script task, run it through SpiffWorkflow, return the final data."""
    (process,) = load(script_process(script), "script.bpmn", None).processes
    workflow = BpmnWorkflow(process.spec, process.subprocess_specs,
                            script_engine=ScriptEngine(RestrictedEnvironment()))
    workflow.get_next_task(state=TaskState.READY).set_data(**data)
    workflow.do_engine_steps()
    assert workflow.is_completed()
    return workflow.data


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 40 and len({script for script, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("script, before, after", CORPUS, ids=[s.splitlines()[0][:40] for s, _, _ in CORPUS])
def test_analyst_script_runs_as_python(script, before, after):
    import copy
    assert run(script, copy.deepcopy(before)) == {**before, **after}


@pytest.mark.parametrize("script, reason", REFUSED, ids=[s.splitlines()[0][:40] for s, _ in REFUSED])
def test_refused_construct_is_refused_at_deploy_with_its_reason(script, reason):
    with pytest.raises(BpmnRefused) as info:
        load(script_process(script), "script.bpmn", None)
    (problem,) = info.value.problems
    assert (problem.file, problem.element_id) == ("script.bpmn", "work")
    assert problem.problem.startswith("script refused: Line ") and reason in problem.problem, problem.problem


def test_scripts_see_only_data_and_the_offered_functions():
    now = run("Now = datetime.now(timezone.utc).year", {})["Now"]
    assert now == datetime.now(timezone.utc).year
    with pytest.raises(Exception, match="AttributeError: .*factorial"):
        run("x = math.factorial(10)", {})  # one call could run for minutes: not offered
