"""An instance's own state as JSON, without the spec (the spec is stored once per version)."""
import json

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

_SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


def _full_dict(workflow) -> dict:
    dct = _SERIALIZER.to_dict(workflow)
    dct.pop("spec", None)
    dct.pop("subprocess_specs", None)
    return dct


def _state_dict(workflow) -> dict:
    """What _full_dict gives, without converting the specs first only to drop them.

    SpiffWorkflow's BpmnWorkflowConverter.to_dict converts the whole spec and every subprocess
    spec (about two thirds of a dump's time for ChatLifecycle); this is its body without them.
    tests/integration/test_engine_state.py checks that both give the same dict.
    """
    registry = _SERIALIZER.registry
    typename = registry.typenames.get(workflow.__class__)
    to_dict = registry.convert_to_dict.get(typename)
    converter = getattr(getattr(to_dict, "args", (None, None))[1], "__self__", None)
    if not isinstance(converter, BpmnWorkflowConverter):
        return _full_dict(workflow)
    dct = WorkflowConverter.to_dict(converter, workflow)
    dct["subprocesses"] = converter.mapping_to_dict(workflow.subprocesses)
    dct["bpmn_events"] = converter.registry.convert(workflow.bpmn_events)
    dct["typename"] = typename
    return dct


def dump(workflow) -> str:
    dct = _state_dict(workflow)
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
