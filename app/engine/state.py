"""An instance's own state as JSON, without the spec (the spec is stored once per version)."""
import json

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

_SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


def dump(workflow) -> str:
    dct = _SERIALIZER.to_dict(workflow)
    dct.pop("spec", None)
    dct.pop("subprocess_specs", None)
    dct[_SERIALIZER.VERSION_KEY] = _SERIALIZER.VERSION
    return json.dumps(dct, cls=_SERIALIZER._encoder_cls, separators=(",", ":"))


def load(text: str, spec, subprocess_specs, script_engine):
    dct = json.loads(text)
    _SERIALIZER.migrate(dct)
    # restore() passes objects that are not dicts through unchanged: the cached specs.
    dct["spec"] = spec
    dct["subprocess_specs"] = subprocess_specs
    workflow = _SERIALIZER.from_dict(dct)
    workflow.script_engine = script_engine
    return workflow
