// One way to draw a BPMN diagram in the console: bpmn-js's prebuilt navigated viewer (from npm,
// served by the app). Answers the viewer; a failure is an Error whose message says what to do.
"use strict";

CF.drawDiagram = async (container, xml, viewer) => {
  if (typeof BpmnJS === "undefined") {  // the bundle's <script> answered 404
    throw new Error("The diagram viewer (bpmn-js) is not installed on the server: run `npm ci` in the repository.");
  }
  viewer = viewer || new BpmnJS({container});
  try {
    await viewer.importXML(xml);
  } catch (err) {
    throw new Error(/no diagram to display/.test(err.message)
      ? "This file has no diagram layout (BPMN DI) to draw: it was written without a modeler."
      : `The diagram could not be drawn: ${err.message}`);
  }
  viewer.get("canvas").zoom("fit-viewport", "auto");
  return viewer;
};
