"""G3 rotation (AT+SYSMFG) when the link drops inside a write's payload: the module keeps reading (ground
truth §6), the next contact ends the write (AtClient.settle, 0xFF) and the damaged key item is put back from
the staged copy (atfab_key/stage_key) the rotation wrote and read back first; the unit ends with a whole
pair the ledger records, nothing pending, no key in any file."""

from __future__ import annotations

import pytest

from atfab.core.mac import normalize_mac
from atfab.image.nvs.reader import read_nvs
from tests.test_rotate import Env


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.ledger.close()


@pytest.mark.parametrize("write, repaired", [(1, False), (2, True)])   # 1: the staged copy, 2: the key item
def test_cut_key_payload_is_finished_next_contact(env, module_pool, write, repaired):
    (m,) = pool = module_pool(1, firmware=env.profile.firmware, seed="cut")
    env.provision(m)
    old = env.device_pair(m)
    m.faults.drop_in_sysmfg_write = write
    first = env.rotate([m.at_url])
    assert first.modules[0].outcome == "ERROR", first.modules[0].line()
    second = env.rotate([m.at_url])
    res = second.modules[0]
    assert res.outcome == "PASS", res.line()
    assert bool([n for s in res.slots for n in s.repaired if "wrote back the staged copy" in n]) == repaired
    cert_fp, cert_spki, key_spki = env.device_pair(m)
    assert cert_spki == key_spki and cert_fp != old[0]
    mac = normalize_mac(m.mac)
    assert env.ledger.pending_rotations(mac) == []
    assert env.ledger.certificates_for(mac, "client.0")[-1].fingerprint == cert_fp
    assert _staged(env, m) is None                # the staged copy is erased (its namespace entry stays, as NVS's)
    del pool
    env.scan()


def _staged(env, module):
    mfg = env.profile.mfg_nvs
    return read_nvs(module.flash.read(mfg.offset, mfg.size)).get("atfab_key", "stage_key")
