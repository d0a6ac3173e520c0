"""DoseRadiomicsWidget exercised headless, in the sequences users run, with both flavours of
parameterNodeWrapper.connectGui (Slicer 5.8: returns None; 5.10 on: returns the tag).

The Qt side is qt_fakes.py (generic Qt/CTK/qMRML behaviour, checked on its own in test_qt_fakes.py);
MRML is the real scene from slicer-core; the .ui is the module's own file."""

from __future__ import annotations

import logging
import sys

import pytest

import qt_fakes
import slicer_standins
import widget_harness
from conftest import _make_slicer_session


@pytest.fixture(params=["5.8", "5.12"])
def env(request, monkeypatch, module):
    monkeypatch.setattr(slicer_standins, "CONNECT_GUI_FLAVOUR", request.param)
    env = widget_harness.install(monkeypatch, _make_slicer_session)
    env.flavour = request.param
    yield env
    for process in list(qt_fakes.LIVE_PROCESSES):
        process.kill()
    qt_fakes.wait_for_processes(env.app, timeout=10)
    qt_fakes.LIVE_PROCESSES.clear()


@pytest.fixture
def harness(env):
    h = widget_harness.Harness(env.module, env.scene)
    yield h
    assert not qt_fakes.SLOT_ERRORS, "a slot raised:\n" + "\n".join(t for _, t in qt_fakes.SLOT_ERRORS)
    assert env.app.overrideCursorDepth == 0, "a wait cursor was not restored"


def test_smoke(harness):
    harness.setup()
    harness.enter()
