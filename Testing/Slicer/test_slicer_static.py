"""What only the Slicer application can run, checked statically: the .ui and the Widget agree, the .ui
uses widget classes Slicer provides, the parameter node binds to widgets the wrapper can connect, the
CMake lists name existing files (and every library file), the Extensions Index entry is consistent."""

from __future__ import annotations

import ast
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "DoseRadiomics"
UI = MODULE / "Resources" / "UI" / "DoseRadiomics.ui"
SCRIPT = MODULE / "DoseRadiomics.py"

# Widget classes that Slicer's loadUI can build. Sources, checked against Slicer commit 583e9b37
# (2026-08-21) and CTK commit 868d56c7: Qt's own widgets (QtDesigner's standard set), CTK's designer
# plugins in Libs/Widgets/Plugins (ctkCollapsibleButtonPlugin, ctkPathLineEditPlugin,
# ctkSliderWidgetPlugin), Slicer's in Libs/MRML/Widgets/DesignerPlugins (qMRMLWidgetPlugin,
# qMRMLNodeComboBoxPlugin), Modules/Loadable/Segmentations/Widgets/DesignerPlugins
# (qMRMLSegmentSelectorWidgetPlugin, qMRMLSegmentEditorWidgetPlugin) and
# Modules/Loadable/Markups/Widgets/DesignerPlugins (qSlicerMarkupsPlaceWidgetPlugin).
SLICER_UI_CLASSES = {
    "QWidget", "QLabel", "QPushButton", "QCheckBox", "QLineEdit", "QComboBox", "QDoubleSpinBox",
    "QProgressBar", "QPlainTextEdit", "QFormLayout", "QVBoxLayout", "QHBoxLayout", "QGridLayout",
    "ctkCollapsibleButton", "ctkPathLineEdit", "ctkSliderWidget",
    "qMRMLWidget", "qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "qMRMLSegmentEditorWidget",
    "qSlicerMarkupsPlaceWidget",
}
# Widgets that show nothing until they are given the scene.
MRML_WIDGETS = ("qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget", "qMRMLSegmentEditorWidget",
                "qSlicerMarkupsPlaceWidget")
# Which widget classes parameterNodeWrapper connects to which parameter types
# (Slicer Base/Python/slicer/parameterNodeWrapper/guiConnectors.py, the canRepresent methods).
CONNECTABLE = {
    "QCheckBox": {"bool"}, "ctkSliderWidget": {"float", "int"}, "QDoubleSpinBox": {"float"},
    "QLineEdit": {"str"}, "QComboBox": {"str"}, "ctkPathLineEdit": {"Path"}, "qMRMLNodeComboBox": {"vtkMRML"},
}


def _ui_tree():
    return ET.parse(UI).getroot()


def _widgets():
    return {w.get("name"): w for w in _ui_tree().iter("widget")}


def _widget_class_source():
    tree = ast.parse(SCRIPT.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DoseRadiomicsWidget")


def test_every_widget_the_panel_uses_exists_in_the_ui():
    used = set()
    for node in ast.walk(_widget_class_source()):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            used.add(node.attr)
    assert len(used) > 15  # the parser found the panel's widgets
    missing = sorted(used - set(_widgets()))
    assert not missing, f"the Widget uses self.ui.<name> absent from DoseRadiomics.ui: {missing}"


def test_the_ui_uses_only_widget_classes_slicer_provides():
    root = _ui_tree()
    classes = {w.get("class") for w in root.iter("widget")} | {lay.get("class") for lay in root.iter("layout")}
    unknown = sorted(classes - SLICER_UI_CLASSES)
    assert not unknown, f"DoseRadiomics.ui uses classes Slicer does not provide: {unknown}"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {c for c in classes if c.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= declared, f"custom widgets not declared in <customwidgets>: {sorted(custom - declared)}"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names in the .ui"


def test_mrml_widgets_receive_the_scene():
    """Each MRML widget gets setMRMLScene from the top-level qMRMLWidget (else it shows no nodes)."""
    root = _ui_tree()
    mrml = {w.get("name") for w in root.iter("widget")
            if w.get("class") in MRML_WIDGETS}
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert mrml and mrml <= connected, f"not given the scene: {sorted(mrml - connected)}"


def test_parameter_names_in_the_ui_are_parameters_of_a_connectable_type(module):
    hints = _parameter_class_hints(module)
    bound = {}
    for w in _ui_tree().iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[w.get("name")] = (w.get("class"), prop.findtext("string"))
    assert len(bound) >= 10
    for widget, (cls, param) in bound.items():
        assert param in hints, f"{widget} binds to unknown parameter {param!r}"
        kind = hints[param]
        assert kind in CONNECTABLE.get(cls, set()), f"{widget} ({cls}) cannot show a {kind} parameter {param!r}"


def test_every_logic_method_the_panel_calls_exists():
    """The Widget's self.logic.<name> calls run only in Slicer: a typo would surface there first."""
    tree = ast.parse(SCRIPT.read_text())
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DoseRadiomicsLogic")
    defined = {n.name for n in logic.body if isinstance(n, ast.FunctionDef)} | {
        t.id for n in logic.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    called = {node.attr for node in ast.walk(_widget_class_source())
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and node.value.attr == "logic" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert len(called) > 15
    inherited = {"getParameterNode"}
    missing = sorted(called - defined - inherited)
    assert not missing, f"the Widget calls Logic methods that do not exist: {missing}"


def _parameter_choices() -> dict:
    """Parameter name -> its Choice([...]) list, from the source annotations."""
    tree = ast.parse(SCRIPT.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DoseRadiomicsParameterNode")
    out = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign):
            for call in ast.walk(stmt.annotation):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Choice":
                    out[stmt.target.id] = ast.literal_eval(call.args[0])
    return out


def test_combo_boxes_bind_to_choice_parameters_listing_their_items():
    """Slicer's QComboBox connector refuses a parameter without Choice and replaces the items with it."""
    choices = _parameter_choices()
    combos = 0
    for w in _ui_tree().iter("widget"):
        if w.get("class") != "QComboBox":
            continue
        param = next((p.findtext("string") for p in w.findall("property") if p.get("name") == "SlicerParameterName"), None)
        if param is None:
            continue
        combos += 1
        assert param in choices, f"{w.get('name')} binds to {param!r}, which has no Choice annotation"
        items = [i.findtext("property/string") for i in w.findall("item")]
        assert items == choices[param], f"{w.get('name')}: .ui items {items} differ from Choice {choices[param]}"
    assert combos >= 6
    # The colour tables offered are the ones the library bundles.
    from DoseRadiomicsLib.dosemap import MODES
    from DoseRadiomicsLib.dosemap_colour import available_colour_tables
    assert sorted(choices["dosePictureColourTable"]) == available_colour_tables()
    assert sorted(choices["dosePictureMode"]) == sorted(MODES)


def _parameter_class_hints(module) -> dict:
    """Parameter name -> 'bool'/'float'/'str'/'Path'/'vtkMRML', from the source annotations."""
    tree = ast.parse(SCRIPT.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DoseRadiomicsParameterNode")
    out = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign):
            text = ast.unparse(stmt.annotation)
            m = re.match(r"Annotated\[(\w+)", text)
            base = m.group(1) if m else text
            out[stmt.target.id] = "vtkMRML" if base.startswith("vtkMRML") else base
    return out


def _cmake_lists(path: Path) -> dict:
    text = re.sub(r"#.*", "", path.read_text())
    return {m.group(1): m.group(2).split() for m in re.finditer(r"set\((\w+)\s+([^)]*)\)", text)}


def test_every_file_the_cmake_lists_name_exists_and_every_library_file_is_listed():
    lists = _cmake_lists(MODULE / "CMakeLists.txt")
    name = lists["MODULE_NAME"][0]
    for var in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        for entry in lists[var]:
            path = MODULE / entry.replace("${MODULE_NAME}", name)
            assert path.is_file(), f"{var} names {entry}, which does not exist"
    for var in ("DoseRadiomicsLib_PYTHON_SCRIPTS", "DoseRadiomicsLib_PYTHON_RESOURCES"):
        for entry in lists[var]:
            assert (REPO / entry).is_file(), f"{var} names {entry}, which does not exist"
    listed = set(lists["DoseRadiomicsLib_PYTHON_SCRIPTS"])
    actual = {p.relative_to(REPO).as_posix() for p in (REPO / "DoseRadiomicsLib").rglob("*.py")
              if "__pycache__" not in p.parts}
    assert not actual - listed, ("library files missing from DoseRadiomicsLib_PYTHON_SCRIPTS in "
                                 f"DoseRadiomics/CMakeLists.txt (run DoseRadiomics/update_cmake_lists.py): "
                                 f"{sorted(actual - listed)}")
    # Parameter files, colour tables, sample case, demo model: beside DoseRadiomicsLib in the built layout.
    import sys
    sys.path.insert(0, str(MODULE))
    import update_cmake_lists
    missing = sorted(set(update_cmake_lists.resource_files()) - set(lists["DoseRadiomicsLib_PYTHON_RESOURCES"]))
    assert not missing, f"shared resources not packaged (run DoseRadiomics/update_cmake_lists.py): {missing}"
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    top = (REPO / "CMakeLists.txt").read_text()
    assert "add_subdirectory(DoseRadiomics)" in top


def test_extension_metadata_and_index_entry_are_consistent():
    top = _cmake_lists(REPO / "CMakeLists.txt")
    text = (REPO / "CMakeLists.txt").read_text()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf'set\({field}\s+"[^"]+"\)', text), f"{field} missing or empty"
    depends = re.search(r'set\(EXTENSION_DEPENDS\s+"([^"]+)"\)', text).group(1).split()
    assert depends == ["SlicerRadiomics", "SlicerRT"]
    entry = json.loads((REPO / "DoseRadiomics.json").read_text())
    # Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json: required keys, no others.
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["scm_type"] in ("git", "local") and 1 <= entry["tier"] <= 5
    assert sorted(entry["build_dependencies"]) == sorted(depends)
    category = re.search(r'set\(EXTENSION_CATEGORY\s+"([^"]+)"\)', text).group(1)
    assert entry["category"] == category
    assert top["EXTENSION_ICONURL"][0].strip('"').endswith("DoseRadiomics/Resources/Icons/DoseRadiomics.png")
    for url in " ".join(top["EXTENSION_SCREENSHOTURLS"]).strip('"').split():
        rel = url.split("/main/", 1)[1]
        assert (REPO / rel).is_file(), f"screenshot URL points to {rel}, not in the repository"
    assert (REPO / "LICENSE").is_file()


def test_icon_is_a_128_pixel_png():
    import struct
    data = (MODULE / "Resources" / "Icons" / "DoseRadiomics.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)


def test_requirements_cover_what_the_dependency_check_imports(module):
    lines = [ln.split("#")[0].strip() for ln in (MODULE / "Resources" / "requirements.txt").read_text().splitlines()]
    packages = {re.split(r"[<>=!~;\[ ]", ln)[0].lower() for ln in lines if ln}
    assert {p.lower() for p in module.REQUIRED_IMPORTS.values()} <= packages
    # pyradiomics comes from SlicerRadiomics, never from pip in Slicer (its sdist does not build there).
    assert "pyradiomics" not in packages
