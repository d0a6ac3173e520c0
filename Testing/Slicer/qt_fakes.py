"""A recording pure-Python stand-in for the Qt, CTK and qMRML classes the DoseRadiomics panel uses.

Real Qt from PyPI (PySide6) was considered: it would give Qt's own signal semantics, but PythonQt's
API (properties as attributes, ``connect('signal(type)', slot)``, CTK and qMRML designer widgets) would
need a facade over every class, and a Qt wheel in the test environment: more than the time allowed. So
each class here follows the documented behaviour of its Qt/CTK/qMRML original, and
``test_qt_fakes.py`` checks that behaviour on its own, independent of the module:

- QComboBox: adding the first item to an empty box makes it current and emits currentIndexChanged(0);
  clear() emits currentIndexChanged(-1); setCurrentIndex emits only on a change (Qt docs, QComboBox).
- QLineEdit.textChanged, QCheckBox.toggled/stateChanged, Q(Double)SpinBox.valueChanged (value clamped
  to the range, rounded to the decimals), QProgressBar ignoring out-of-range values: Qt docs.
- QAbstractButton.click() does nothing on a disabled button (Qt docs).
- PythonQt: ``obj.connect("sig(args)", slot)`` and bound ``obj.sig.connect(slot)``; a slot gets as
  many of the signal's arguments as it accepts; an exception in a slot is printed and the emitter
  goes on (recorded here in ``SLOT_ERRORS`` so that tests can assert that nothing raised).
- qMRMLNodeComboBox lists the real scene's nodes of its nodeTypes (exact classes unless
  showChildNodeTypes, minus hideChildNodeTypes, attribute filters, hidden-from-editor nodes), with
  QComboBox row semantics: with noneEnabled the "None" row is first; otherwise the first node added
  to an empty box becomes current; removing the current node makes the row at its place current
  (or the last row), and currentNodeChanged is emitted (as on scene close); setCurrentNode with a
  node it does not list selects "None" (or nothing).
- QProcess runs a real process (subprocess); its output, finished(exitCode, exitStatus) with
  CrashExit for a process killed by a signal, and errorOccurred(FailedToStart) for a program that
  cannot be started, are delivered from the event loop (``FakeApp.processEvents``), as in Qt.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import signal as _signal
import subprocess
import sys
import threading
import traceback
import types
import weakref
import xml.etree.ElementTree as ET

SLOT_ERRORS: list = []  # (signal signature, formatted traceback) of every exception raised in a slot
EVENT_QUEUE: list = []  # callables posted to the event loop (QTimer.singleShot, deleteLater, QProcess)
LIVE_PROCESSES: list = []


def _normalize(signature: str) -> str:
    return signature.replace(" ", "").replace("const", "").replace("&", "")


def _accepted_arguments(slot) -> int | None:
    """How many positional arguments ``slot`` accepts (None: any number)."""
    try:
        sig = inspect.signature(slot)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


class BoundSignal:
    def __init__(self, owner, signal: "Signal"):
        self._owner = owner
        self._signal = signal

    @property
    def _slots(self):
        return self._owner.__dict__.setdefault("_slots_" + self._signal.name, [])

    def connect(self, slot):
        self._slots.append(slot)
        return True

    def disconnect(self, slot=None):
        if slot is None:
            self._slots.clear()
            return True
        for i, s in enumerate(self._slots):
            if s == slot:
                del self._slots[i]
                return True
        # PythonQt raises when a connection that does not exist is removed.
        raise RuntimeError(f"{self._signal.signatures[0]}: slot {slot!r} is not connected")

    def emit(self, *args):
        if self._owner.signalsBlocked():
            return
        for slot in list(self._slots):
            n = _accepted_arguments(slot)
            try:
                slot(*(args if n is None else args[:n]))
            except Exception:  # noqa: BLE001 - PythonQt prints a slot's exception and the emitter goes on
                text = traceback.format_exc()
                SLOT_ERRORS.append((self._signal.signatures[0], text))
                logging.error("exception in a slot of %s:\n%s", self._signal.signatures[0], text)

    def __call__(self, *args):
        self.emit(*args)


class Signal:
    """A Qt signal; ``signatures`` are its C++ overloads, e.g. ('currentIndexChanged(int)',)."""

    def __init__(self, *signatures):
        self.signatures = tuple(_normalize(s) for s in signatures)
        self.name = self.signatures[0].split("(")[0]

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return BoundSignal(obj, self)


def _signals_of(cls) -> dict:
    out = {}
    for klass in reversed(cls.__mro__):
        for value in vars(klass).values():
            if isinstance(value, Signal):
                for s in value.signatures:
                    out[s] = value
    return out


#
# qt
#


class QObject:
    destroyed = Signal("destroyed()")

    def __init__(self, parent=None):
        self._parent = None
        self._children = []
        self._properties = {}
        self._blocked = False
        self.deleted = False
        self.objectName = ""
        if parent is not None:
            self.setParent(parent)

    # PythonQt exposes objectName also as .name
    @property
    def name(self):
        return self.objectName

    @name.setter
    def name(self, value):
        self.objectName = value

    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        out = []
        for c in self._children:
            if cls is None or isinstance(c, cls):
                out.append(c)
            out.extend(c.findChildren(cls))
        return out

    def property(self, name):
        if name in self._properties:
            return self._properties[name]
        return getattr(self, name, None) if not name[0].isupper() else None

    def setProperty(self, name, value):
        self._properties[name] = value
        return True

    def className(self):
        return type(self).__name__

    def isWidgetType(self):
        return False

    def blockSignals(self, block: bool) -> bool:
        old, self._blocked = self._blocked, bool(block)
        return old

    def signalsBlocked(self) -> bool:
        return self._blocked

    def _bound(self, signature: str):
        sig = _signals_of(type(self)).get(_normalize(signature))
        if sig is None:
            # PythonQt: "signal not found"; connect returns False and nothing is connected.
            SLOT_ERRORS.append((signature, f"{type(self).__name__} has no signal {signature}"))
            return None
        return sig.__get__(self)

    def connect(self, signature, slot):
        bound = self._bound(signature)
        return bound.connect(slot) if bound is not None else False

    def disconnect(self, signature, slot=None):
        bound = self._bound(signature)
        return bound.disconnect(slot) if bound is not None else False

    def deleteLater(self):
        def delete():
            self.deleted = True
            self.destroyed.emit()
            self.setParent(None)
        EVENT_QUEUE.append(delete)


class QLayout(QObject):
    def __init__(self, parent=None):
        super().__init__(None)
        self._widget = None
        self.items = []
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget, *args):
        self.items.append(widget)
        if self._widget is not None:
            widget.setParent(self._widget)

    def addLayout(self, layout, *args):
        self.items.append(layout)

    def addRow(self, *args):
        for a in args:
            if isinstance(a, QWidget):
                self.addWidget(a)

    def setContentsMargins(self, *args):
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QWidget(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.enabled = True
        self.visible = False
        self.toolTip = ""
        self._layout = None

    def isWidgetType(self):
        return True

    def setLayout(self, layout):
        self._layout = layout
        layout._widget = self
        for w in layout.items:
            if isinstance(w, QWidget):
                w.setParent(self)

    def layout(self):
        return self._layout

    def show(self):
        self.visible = True

    def setEnabled(self, value):
        self.enabled = bool(value)

    def setVisible(self, value):
        self.visible = bool(value)


class QLabel(QWidget):
    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.wordWrap = False


class QAbstractButton(QWidget):
    clicked = Signal("clicked(bool)", "clicked()")
    toggled = Signal("toggled(bool)")

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.checkable = False
        self._checked = False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        self.setChecked(value)

    def setChecked(self, value):
        value = bool(value)
        if not self.checkable or value == self._checked:
            return
        self._checked = value
        self.toggled.emit(value)

    def isChecked(self):
        return self._checked

    def click(self):
        # QAbstractButton::click(): does nothing if the button is disabled.
        if not self.enabled:
            return
        if self.checkable:
            self.setChecked(not self._checked)
        self.clicked.emit(self._checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    stateChanged = Signal("stateChanged(int)")

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True

    def setChecked(self, value):
        value = bool(value)
        if value == self._checked:
            return
        self._checked = value
        self.stateChanged.emit(2 if value else 0)  # Qt::Checked / Qt::Unchecked
        self.toggled.emit(value)


class QLineEdit(QWidget):
    textChanged = Signal("textChanged(QString)")
    textEdited = Signal("textEdited(QString)")

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self._text = text
        self.placeholderText = ""

    @property
    def text(self):
        return self._text

    @text.setter
    def text(self, value):
        self.setText(value)

    def setText(self, value):
        value = str(value)
        if value != self._text:
            self._text = value
            self.textChanged.emit(value)  # also for programmatic changes (Qt docs), unlike textEdited


class QComboBox(QWidget):
    currentIndexChanged = Signal("currentIndexChanged(int)")
    currentTextChanged = Signal("currentTextChanged(QString)")
    activated = Signal("activated(int)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []
        self._index = -1

    def count(self):
        return len(self._items)

    def itemText(self, i):
        return self._items[i] if 0 <= i < len(self._items) else ""

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, value):
        self.setCurrentIndex(value)

    @property
    def currentText(self):
        return self.itemText(self._index)

    def _set_index(self, index):
        if index == self._index:
            return
        self._index = index
        self.currentIndexChanged.emit(index)
        self.currentTextChanged.emit(self.currentText)

    def setCurrentIndex(self, index):
        # An index outside the items makes the box show nothing (-1), as QComboBox does.
        self._set_index(index if 0 <= index < len(self._items) else -1)

    def setCurrentText(self, text):
        if text in self._items:
            self.setCurrentIndex(self._items.index(text))

    def addItem(self, text, userData=None):
        self.insertItem(len(self._items), text)

    def addItems(self, texts):
        for t in texts:
            self.addItem(t)

    def insertItem(self, index, text, userData=None):
        index = max(0, min(index, len(self._items)))
        self._items.insert(index, str(text))
        if len(self._items) == 1:
            self._set_index(0)  # the first item of an empty box becomes current (and is announced)
        elif index <= self._index:
            self._index += 1  # the current item moved down a row; not used by the panel

    def removeItem(self, index):
        if not 0 <= index < len(self._items):
            return
        del self._items[index]
        if index < self._index:
            self._index -= 1
        elif index == self._index:
            self._index = -2  # force the emission below
            self._set_index(min(index, len(self._items) - 1))

    def clear(self):
        self._items = []
        self._set_index(-1)

    def findText(self, text):
        return self._items.index(text) if text in self._items else -1


class QAbstractSpinBox(QWidget):
    valueChanged = Signal("valueChanged(double)")
    _integer = False

    def __init__(self, parent=None):
        super().__init__(parent)
        self._minimum, self._maximum = 0.0, 99.0 if self._integer else 99.99
        self.decimals = 0 if self._integer else 2
        self.singleStep = 1.0
        self.suffix = ""
        self._value = 0

    def _clean(self, value):
        value = min(max(value, self._minimum), self._maximum)
        return int(round(value)) if self._integer else round(float(value), self.decimals)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self.setValue(v)

    def setValue(self, v):
        v = self._clean(v)
        if v != self._value:
            self._value = v
            self.valueChanged.emit(v)

    @property
    def minimum(self):
        return self._minimum

    @minimum.setter
    def minimum(self, v):
        self._minimum = v
        self._maximum = max(self._maximum, v)
        self.setValue(self._value)

    @property
    def maximum(self):
        return self._maximum

    @maximum.setter
    def maximum(self, v):
        self._maximum = v
        self._minimum = min(self._minimum, v)
        self.setValue(self._value)

    def setRange(self, lo, hi):
        self.minimum, self.maximum = lo, hi


class QDoubleSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(double)")


class QSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(int)")
    _integer = True


class QProgressBar(QWidget):
    valueChanged = Signal("valueChanged(int)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.minimum, self.maximum = 0, 100
        self._value = -1  # Qt: reset() state

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        v = int(v)
        if v == self._value or not self.minimum <= v <= self.maximum:
            return  # QProgressBar::setValue ignores values outside the range
        self._value = v
        self.valueChanged.emit(v)


class QPlainTextEdit(QWidget):
    textChanged = Signal("textChanged()")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._lines = []
        self.readOnly = False

    def appendPlainText(self, text):
        self._lines.append(str(text))
        self.textChanged.emit()

    def clear(self):
        self._lines = []
        self.textChanged.emit()

    def toPlainText(self):
        return "\n".join(self._lines)

    @property
    def plainText(self):
        return self.toPlainText()


class QTimer(QObject):
    timeout = Signal("timeout()")

    @staticmethod
    def singleShot(msec, callback):
        EVENT_QUEUE.append(callback)


class QByteArray:
    def __init__(self, data=b""):
        self._data = bytes(data)

    def data(self):
        return self._data


class QProcessEnvironment:
    def __init__(self, env=None):
        self.env = dict(env or {})

    @staticmethod
    def systemEnvironment():
        return QProcessEnvironment(os.environ)

    def insert(self, key, value):
        self.env[key] = value

    def value(self, key, default=""):
        return self.env.get(key, default)


class QProcess(QObject):
    """A real child process; signals are delivered from the fake event loop, as Qt delivers them."""

    NotRunning, Starting, Running = 0, 1, 2
    NormalExit, CrashExit = 0, 1
    FailedToStart, Crashed, Timedout, ReadError, WriteError, UnknownError = 0, 1, 2, 3, 4, 5
    SeparateChannels, MergedChannels = 0, 1

    started = Signal("started()")
    finished = Signal("finished(int,QProcess::ExitStatus)", "finished(int)")
    errorOccurred = Signal("errorOccurred(QProcess::ProcessError)")
    readyReadStandardOutput = Signal("readyReadStandardOutput()")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._env = None
        self._mode = self.SeparateChannels
        self._popen = None
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._error = None
        self._errorString = "Unknown error"
        self._exitCode = 0
        self._exitStatus = self.NormalExit
        self._state = self.NotRunning

    def setProcessEnvironment(self, env):
        self._env = env

    def setProcessChannelMode(self, mode):
        self._mode = mode

    def state(self):
        return self._state

    def error(self):
        return self._error

    def errorString(self):
        return self._errorString

    def exitCode(self):
        return self._exitCode

    def exitStatus(self):
        return self._exitStatus

    def start(self, program, arguments=()):
        env = self._env.env if self._env is not None else None
        resolved = shutil.which(program, path=(env or os.environ).get("PATH")) if os.sep not in program else program
        try:
            if resolved is None:
                raise FileNotFoundError(program)
            self._popen = subprocess.Popen(
                [resolved, *arguments], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if self._mode == self.MergedChannels else subprocess.DEVNULL)
        except OSError as e:
            # Qt: state stays NotRunning, errorOccurred(FailedToStart), and finished() is never emitted.
            self._error = self.FailedToStart
            self._errorString = f"execvp: {e.strerror or 'No such file or directory'}"
            EVENT_QUEUE.append(lambda: self.errorOccurred.emit(self.FailedToStart))
            return
        self._state = self.Running
        LIVE_PROCESSES.append(self)
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()
        EVENT_QUEUE.append(self.started.emit)

    def _reader(self):
        for chunk in iter(lambda: self._popen.stdout.read1(4096), b""):
            with self._lock:
                self._buffer.extend(chunk)
        self._popen.wait()

    def _poll(self) -> bool:
        """Deliver pending output, then finished(): called by the event loop. True once done."""
        with self._lock:
            pending = bool(self._buffer)
        if pending:
            self.readyReadStandardOutput.emit()
        if self._thread.is_alive():  # the reader ends when the process has exited and the pipe is drained
            return False
        code = self._popen.poll()
        with self._lock:
            if self._buffer:
                self.readyReadStandardOutput.emit()
        self._state = self.NotRunning
        if code < 0:  # killed by a signal: CrashExit, and errorOccurred(Crashed) first (Qt docs)
            self._exitCode, self._exitStatus = 0, self.CrashExit
            self._error = self.Crashed
            self.errorOccurred.emit(self.Crashed)
        else:
            self._exitCode, self._exitStatus = code, self.NormalExit
        self.finished.emit(self._exitCode, self._exitStatus)
        return True

    def readAllStandardOutput(self):
        with self._lock:
            data = bytes(self._buffer)
            self._buffer.clear()
        return QByteArray(data)

    def kill(self):
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(_signal.SIGKILL)

    def terminate(self):
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()

    def waitForFinished(self, msecs=30000):
        if self._popen is None:
            return False
        try:
            self._popen.wait(timeout=msecs / 1000)
        except subprocess.TimeoutExpired:
            return False
        return True


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists()

    def fileName(self):
        return self.path


class QUrl:
    def __init__(self, text=""):
        self.text = str(text)

    @staticmethod
    def fromLocalFile(path):
        return QUrl("file://" + str(path))

    def toString(self):
        return self.text


class QDesktopServices:
    opened: list = []

    @staticmethod
    def openUrl(url):
        QDesktopServices.opened.append(url.toString())
        return True


class QMessageBox(QWidget):
    Ok, Cancel, Yes, No = 0x400, 0x400000, 0x4000, 0x10000
    NoIcon, Information, Warning, Critical, Question = 0, 1, 2, 3, 4


class QFileDialog(QWidget):
    @staticmethod
    def getOpenFileName(*args, **kwargs):
        return ""

    @staticmethod
    def getExistingDirectory(*args, **kwargs):
        return ""


class QSettings:
    _store: dict = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def contains(self, key):
        """QSettings::contains: true if a setting called key exists."""
        return key in self._store

    def setValue(self, key, value):
        self._store[key] = value


class Qt:
    WaitCursor = 16
    Vertical, Horizontal = 2, 1


#
# ctk
#


class ctkCollapsibleButton(QAbstractButton):
    contentsCollapsed = Signal("contentsCollapsed(bool)")

    def __init__(self, parent=None):
        super().__init__("", parent)
        self._collapsed = False

    @property
    def collapsed(self):
        return self._collapsed

    @collapsed.setter
    def collapsed(self, value):
        if bool(value) != self._collapsed:
            self._collapsed = bool(value)
            self.contentsCollapsed.emit(self._collapsed)


class ctkPathLineEdit(QWidget):
    currentPathChanged = Signal("currentPathChanged(QString)")
    Dirs, Files, Executable, NoDot, NoDotDot, Readable = 1, 2, 4, 8, 16, 32

    def __init__(self, parent=None):
        super().__init__(parent)
        self._path = ""
        self.filters = 0
        self.nameFilters = []

    @property
    def currentPath(self):
        return self._path

    @currentPath.setter
    def currentPath(self, value):
        self.setCurrentPath(value)

    def setCurrentPath(self, value):
        value = str(value)
        if value != self._path:
            self._path = value
            self.currentPathChanged.emit(value)


class ctkSliderWidget(QAbstractSpinBox):
    """ctkSliderWidget: a slider and a spin box sharing one double value (valueChanged(double))."""

    valueChanged = Signal("valueChanged(double)")


class ctkComboBox(QComboBox):
    pass


class ctkCheckBox(QCheckBox):
    pass


class ctkDirectoryButton(QWidget):
    directoryChanged = Signal("directoryChanged(QString)")


class ctkDoubleSlider(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(double)")


class ctkDoubleSpinBox(QAbstractSpinBox):
    valueChanged = Signal("valueChanged(double)")


class ctkRangeWidget(QWidget):
    valuesChanged = Signal("valuesChanged(double,double)")


class ctkCheckablePushButton(QPushButton):
    pass


#
# qMRML (Slicer's MRML widgets)
#


class qMRMLWidget(QWidget):
    mrmlSceneChanged = Signal("mrmlSceneChanged(vtkMRMLScene*)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        if scene is self._scene:
            return
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(qMRMLWidget):
    currentNodeChanged = Signal("currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)")
    currentNodeIDChanged = Signal("currentNodeIDChanged(QString)")
    nodeAdded = Signal("nodeAdded(vtkMRMLNode*)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._nodeTypes = []
        self._showChildNodeTypes = True
        self._hideChildNodeTypes = []
        self._noneEnabled = False
        self._attributes = []  # (nodeType, name, value or None)
        self.addEnabled = self.removeEnabled = self.renameEnabled = self.editEnabled = False
        self.selectNodeUponCreation = True
        self._rows = []  # node IDs (None for the "None" row)
        self._index = -1
        self._observations = []

    # filter properties: changing one re-lists the nodes

    def _prop(name):  # noqa: N805 - a small property factory
        def get(self):
            return getattr(self, "_" + name)

        def set_(self, value):
            setattr(self, "_" + name, list(value) if isinstance(value, (list, tuple)) else value)
            self._relist()
        return property(get, set_)

    nodeTypes = _prop("nodeTypes")
    showChildNodeTypes = _prop("showChildNodeTypes")
    hideChildNodeTypes = _prop("hideChildNodeTypes")
    noneEnabled = _prop("noneEnabled")
    del _prop

    def addAttribute(self, nodeType, attributeName, attributeValue=None):
        self._attributes.append((nodeType, attributeName, attributeValue))
        self._relist()

    def accepts(self, node) -> bool:
        """qMRMLSortFilterProxyModel's rules for one node."""
        if node is None or not self._nodeTypes or node.GetHideFromEditors():
            return False
        if not any(node.IsA(t) for t in self._nodeTypes):
            return False
        if not self._showChildNodeTypes and node.GetClassName() not in self._nodeTypes:
            return False
        if any(node.IsA(t) for t in self._hideChildNodeTypes):
            return False
        for nodeType, name, value in self._attributes:
            if node.IsA(nodeType):
                actual = node.GetAttribute(name)
                if actual is None or (value is not None and actual != str(value)):
                    return False
        return True

    def setMRMLScene(self, scene):
        old = self._scene
        if old is not None:
            for tag in self._observations:
                old.RemoveObserver(tag)
        self._observations = []
        super().setMRMLScene(scene)
        if scene is not None:
            # A weak reference, as a QObject's connections die with it: a combo box a test dropped
            # must not be called by a scene it never detached from.
            ref = weakref.ref(self)

            def onSceneChanged(caller, event):
                combo = ref()
                if combo is not None and "_rows" in combo.__dict__:
                    combo._relist()
            self._observations = [scene.AddObserver(scene.NodeAddedEvent, onSceneChanged),
                                  scene.AddObserver(scene.NodeRemovedEvent, onSceneChanged)]
        self._relist()

    def nodes(self):
        scene = self._scene
        return [scene.GetNodeByID(i) for i in self._rows if i is not None] if scene else []

    def _relist(self):
        """Rebuild the rows from the scene, keeping QComboBox's current-row rules."""
        scene = self._scene
        previousNode = self.currentNodeID()
        previousIndex = self._index
        rows = [None] if self._noneEnabled else []
        if scene is not None:
            for i in range(scene.GetNumberOfNodes()):
                node = scene.GetNthNode(i)
                if self.accepts(node):
                    rows.append(node.GetID())
        self._rows = rows
        if previousNode is not None and previousNode in rows:
            self._index = rows.index(previousNode)
        elif previousIndex == -1 or (previousNode is None and None in rows):
            # An empty box whose first row appears selects it (QComboBox); "None" stays selected.
            self._index = 0 if rows else -1
        else:
            # The current row went away: the row now at its place, or the last one (QComboBox).
            self._index = min(max(previousIndex, 0), len(rows) - 1)
        if self.currentNodeID() != previousNode:
            self._announce()

    def _announce(self):
        node = self.currentNode()
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(node.GetID() if node is not None else "")

    def currentNodeID(self):
        return self._rows[self._index] if 0 <= self._index < len(self._rows) else None

    def currentNode(self):
        nodeId = self.currentNodeID()
        return self._scene.GetNodeByID(nodeId) if nodeId is not None and self._scene is not None else None

    def setCurrentNode(self, node):
        nodeId = node.GetID() if node is not None else None
        previous = self.currentNodeID()
        if nodeId == previous:
            return
        if nodeId in self._rows:
            self._index = self._rows.index(nodeId)
        else:
            # A node the box does not list (or none) selects "None", or nothing without that row
            # (qMRMLNodeComboBoxPrivate::setCurrentNodeIDInternal, v5.12.3).
            self._index = 0 if self._noneEnabled else -1
        if self.currentNodeID() != previous:
            self._announce()

    def setCurrentNodeID(self, nodeId):
        self.setCurrentNode(self._scene.GetNodeByID(nodeId) if nodeId else None)


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    currentNodeChanged = Signal("currentNodeChanged(vtkMRMLNode*)")
    currentSegmentChanged = Signal("currentSegmentChanged(QString)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._combo = qMRMLNodeComboBox()
        self._combo.nodeTypes = ["vtkMRMLSegmentationNode"]
        self._combo.currentNodeChanged.connect(self._onNodeChanged)
        self._segmentId = ""

    @property
    def noneEnabled(self):
        return self._combo.noneEnabled

    @noneEnabled.setter
    def noneEnabled(self, value):
        self._combo.noneEnabled = value

    def setMRMLScene(self, scene):
        super().setMRMLScene(scene)
        self._combo.setMRMLScene(scene)

    def _onNodeChanged(self, node):
        self.currentNodeChanged.emit(node)
        # The segment list is the new node's: its first segment (or none) becomes current.
        first = ""
        if node is not None and node.GetSegmentation().GetNumberOfSegments():
            first = node.GetSegmentation().GetNthSegmentID(0)
        self._setSegment(first)

    def _setSegment(self, segmentId):
        if segmentId != self._segmentId:
            self._segmentId = segmentId
            self.currentSegmentChanged.emit(segmentId)

    def currentNode(self):
        return self._combo.currentNode()

    def currentNodeID(self):
        return self._combo.currentNodeID()

    def setCurrentNode(self, node):
        self._combo.setCurrentNode(node)

    def currentSegmentID(self):
        return self._segmentId

    def setCurrentSegmentID(self, segmentId):
        node = self.currentNode()
        if node is not None and node.GetSegmentation().GetSegment(segmentId) is not None:
            self._setSegment(segmentId)


class FakeEffect:
    def __init__(self, name):
        self.name = name


class qMRMLSegmentEditorWidget(qMRMLWidget):
    """The embedded editor: its state lives in a vtkMRMLSegmentEditorNode, as in Slicer.

    Operations that need the editor node record an error (the real widget logs a critical message
    and does nothing) when it has none or when that node is no longer in the scene.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._editorNode = None
        self._activeEffect = None
        self.viewObservations = 0
        self.keyboardShortcutsInstalled = False
        self.segmentationNodeSelectorVisible = True
        self.sourceVolumeNodeSelectorVisible = True
        self.errors = []

    def _node(self, what):
        node = self._editorNode
        if node is None or node.GetScene() is None or node.GetScene() is not self._scene:
            self.errors.append(f"{what}: no valid segment editor node")
            return None
        return node

    def setMRMLSegmentEditorNode(self, node):
        self._editorNode = node

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node):
        editorNode = self._node("setSegmentationNode")
        if editorNode is not None:
            editorNode.SetAndObserveSegmentationNode(node)

    def segmentationNode(self):
        node = self._editorNode
        return node.GetSegmentationNode() if node is not None else None

    def segmentationNodeID(self):
        node = self.segmentationNode()
        return node.GetID() if node is not None else ""

    def setSourceVolumeNode(self, node):
        editorNode = self._node("setSourceVolumeNode")
        if editorNode is not None:
            editorNode.SetAndObserveSourceVolumeNode(node)

    def setMasterVolumeNode(self, node):
        logging.warning("qMRMLSegmentEditorWidget::setMasterVolumeNode is deprecated, use setSourceVolumeNode")
        self.setSourceVolumeNode(node)

    def sourceVolumeNode(self):
        node = self._editorNode
        return node.GetSourceVolumeNode() if node is not None else None

    def setActiveEffectByName(self, name):
        if self._node("setActiveEffectByName") is not None:
            self._activeEffect = FakeEffect(name)
            self.viewObservations += 1  # an active effect observes the slice and 3D views

    def setActiveEffect(self, effect):
        self._activeEffect = effect

    def activeEffect(self):
        return self._activeEffect

    def removeViewObservations(self):
        self.viewObservations = 0

    def installKeyboardShortcuts(self, parent=None):
        self.keyboardShortcutsInstalled = True

    def uninstallKeyboardShortcuts(self):
        self.keyboardShortcutsInstalled = False

    def updateWidgetFromMRML(self):
        self._node("updateWidgetFromMRML")


class qSlicerMarkupsPlaceWidget(qMRMLWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._node = None

    def setCurrentNode(self, node):
        self._node = node

    def currentNode(self):
        return self._node


#
# QUiLoader: builds the widget tree of a real .ui file
#


def _value(prop):
    child = next(iter(prop), None)
    if child is None:
        return None
    tag = child.tag
    if tag == "string":
        return child.text or ""
    if tag == "bool":
        return child.text == "true"
    if tag == "number":
        return int(child.text)
    if tag == "double":
        return float(child.text)
    if tag == "stringlist":
        return [s.text or "" for s in child.findall("string")]
    if tag in ("set", "enum"):
        return child.text
    return None


class QUiLoader:
    """Instantiates the .ui's classes from the namespaces given (qt, ctk, slicer's qMRML classes)."""

    namespaces: list = []

    def _class(self, name):
        for ns in self.namespaces:
            cls = getattr(ns, name, None)
            if isinstance(cls, type):
                return cls
        raise RuntimeError(f"QUiLoader: unknown widget class {name}")

    def load(self, qfile):
        root = ET.parse(qfile.fileName()).getroot()
        top = self._widget(root.find("widget"), None)
        for c in root.iter("connection"):
            sender = top if c.findtext("sender") in (None, top.objectName) else self._find(top, c.findtext("sender"))
            receiver = self._find(top, c.findtext("receiver"))
            slotName = c.findtext("slot").split("(")[0]
            sender.connect(c.findtext("signal"), getattr(receiver, slotName))
        return top

    @staticmethod
    def _find(top, name):
        for w in [top, *top.findChildren()]:
            if w.objectName == name:
                return w
        raise RuntimeError(f"QUiLoader: no widget named {name}")

    def _widget(self, element, parent):
        widget = self._class(element.get("class"))()
        widget.objectName = element.get("name")
        if parent is not None:
            widget.setParent(parent)
        items = []
        for child in element:
            if child.tag == "property":
                value = _value(child)
                name = child.get("name")
                if child.get("stdset") == "0":
                    widget.setProperty(name, value)
                elif name not in ("geometry", "sizePolicy", "minimumSize", "maximumSize"):
                    setattr(widget, name, value)
            elif child.tag == "item":
                items.append(_value(child.find("property")) if child.find("property") is not None else "")
            elif child.tag == "widget":
                self._widget(child, widget)
            elif child.tag == "layout":
                self._layout(child, widget)
        for text in items:
            widget.addItem(text)
        return widget

    def _layout(self, element, parent):
        for item in element.iter("item"):
            for child in item:
                if child.tag == "widget":
                    self._widget(child, parent)
                elif child.tag == "layout":
                    self._layout(child, parent)
            item.clear()  # handled (nested items are reached by iter once)


#
# The application (slicer.app) and its layout manager, backed by the real MRML layout logic
#


class FakeViewWidget:
    def __init__(self, scene, nodeClass, index):
        self._scene, self._class, self._index = scene, nodeClass, index

    def _viewNode(self):
        return self._scene.GetNthNodeByClass(self._index, self._class)

    def mrmlTableViewNode(self):
        return self._viewNode()

    def mrmlPlotViewNode(self):
        return self._viewNode()


class FakeLayoutManager:
    """qSlicerLayoutManager's Python surface over the real vtkMRMLLayoutLogic (which creates the view
    nodes of each layout: table and plot view nodes included)."""

    def __init__(self, layoutLogic):
        self._logic = layoutLogic

    @property
    def layout(self):
        return self._logic.GetLayoutNode().GetViewArrangement()

    @layout.setter
    def layout(self, value):
        self.setLayout(value)

    def setLayout(self, value):
        self._logic.GetLayoutNode().SetViewArrangement(int(value))

    def tableWidget(self, index):
        scene = self._logic.GetMRMLScene()
        return FakeViewWidget(scene, "vtkMRMLTableViewNode", index) if index < scene.GetNumberOfNodesByClass(
            "vtkMRMLTableViewNode") else None

    def plotWidget(self, index):
        scene = self._logic.GetMRMLScene()
        return FakeViewWidget(scene, "vtkMRMLPlotViewNode", index) if index < scene.GetNumberOfNodesByClass(
            "vtkMRMLPlotViewNode") else None

    def tableViewCount(self):
        return self._logic.GetMRMLScene().GetNumberOfNodesByClass("vtkMRMLTableViewNode")

    def plotViewCount(self):
        return self._logic.GetMRMLScene().GetNumberOfNodesByClass("vtkMRMLPlotViewNode")

    def sliceViewNames(self):
        return []

    def sliceWidget(self, name):
        return None


class FakeModuleManager(QObject):
    moduleAboutToBeUnloaded = Signal("moduleAboutToBeUnloaded(QString)")


class FakeApp(QObject):
    startupCompleted = Signal("startupCompleted()")

    def __init__(self, appLogic, layoutLogic):
        super().__init__()
        self._appLogic = appLogic
        self._layoutManager = FakeLayoutManager(layoutLogic)
        self._moduleManager = FakeModuleManager()
        self.applicationName = "Slicer"
        self.overrideCursorDepth = 0

    def testingEnabled(self):
        return True  # message boxes are logged instead of shown (slicer.util._messageDisplay)

    def applicationLogic(self):
        return self._appLogic

    def layoutManager(self):
        return self._layoutManager

    def moduleManager(self):
        return self._moduleManager

    def topLevelWidgets(self):
        return []

    def setOverrideCursor(self, cursor):
        self.overrideCursorDepth += 1

    def restoreOverrideCursor(self):
        self.overrideCursorDepth -= 1

    def processEvents(self, *args):
        """One pass of the event loop: posted calls, then running processes' output and exit."""
        queued = list(EVENT_QUEUE)
        EVENT_QUEUE.clear()
        for call in queued:
            call()
        for process in list(LIVE_PROCESSES):
            if process._poll():
                LIVE_PROCESSES.remove(process)


def wait_for_processes(app, timeout=30.0):
    """Run the event loop until every started process has finished (or the timeout)."""
    import time
    end = time.monotonic() + timeout
    while (LIVE_PROCESSES or EVENT_QUEUE) and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()
    return not LIVE_PROCESSES


def make_qt_modules():
    """The ``qt`` and ``ctk`` modules, and the qMRML classes to put on ``slicer``."""
    qt = types.ModuleType("qt")
    for name, value in list(globals().items()):
        if name.startswith("Q") or name == "Qt":
            setattr(qt, name, value)
    ctk = types.ModuleType("ctk")
    for name, value in list(globals().items()):
        if name.startswith("ctk"):
            setattr(ctk, name, value)
    qmrml = {name: value for name, value in globals().items() if name.startswith(("qMRML", "qSlicer"))}
    QUiLoader.namespaces = [qt, ctk, types.SimpleNamespace(**qmrml)]
    return qt, ctk, qmrml
