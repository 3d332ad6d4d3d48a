"""`fl-crb keys` bundles: each host gets exactly what its role needs, no private key twice,
and `HostBundle.load` refuses a bundle that is wrong, incomplete or unsafe, saying why."""

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from fl_crb.cli import main
from fl_crb.federation.host_bundle import BundleError, HostBundle
from fl_crb.federation.keys import (
    KeyFolder,
    KeyPlan,
    KeysExistError,
    create_keys,
    plan_for_topology,
)
from fl_crb.topology import load_topology

TINY = Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml"
HOSTS = ("cloud", "edge1", "edge2", "t1", "t2", "t3", "t4")
"""tiny.yaml: edge1 manages t1 and t3, edge2 manages t2 and t4 (round-robin)."""
RUN = bytes(range(16))


def _plan() -> KeyPlan:
    return plan_for_topology(load_topology(TINY), [])


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundles") / "keys"
    create_keys(folder, _plan())
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_bundle_holds_exactly_what_its_role_needs(keys_dir):
    assert sorted(p.name for p in keys_dir.iterdir()) == sorted([*HOSTS, "ca", "keys.json"])
    assert _files(keys_dir / "ca") == ["ca.crt", "ca.key"]
    assert _files(keys_dir / "cloud") == [
        "batches/edge1.pub",
        "batches/edge2.pub",
        "bundle.json",
        "ca.crt",
        "superlink.crt",
        "superlink.key",
        *(f"supernodes/{host}.pub" for host in ("edge1", "edge2", "t1", "t2", "t3", "t4")),
        "uploads/authority.key",
        "uploads/authority.pub",
        *(f"uploads/{t}.pub" for t in ("t1", "t2", "t3", "t4")),
        "weights/edge1.pub",
        "weights/edge2.pub",
    ]
    assert _files(keys_dir / "edge2") == [
        "batches/edge2.key",
        "bundle.json",
        "ca.crt",
        "supernodes/edge2.key",
        "uploads/authority.pub",
        "weights/edge2.key",
    ]
    for terminal, edge in [("t1", "edge1"), ("t2", "edge2"), ("t3", "edge1"), ("t4", "edge2")]:
        assert _files(keys_dir / terminal) == [
            "bundle.json",
            "ca.crt",
            f"supernodes/{terminal}.key",
            "uploads/authority.pub",
            f"uploads/{terminal}.key",
            f"weights/{edge}.pub",
        ]


def test_no_private_key_is_in_two_bundles_and_the_ca_key_in_none(keys_dir):
    seen: dict[str, list[str]] = {}
    for host in HOSTS:
        for path in (keys_dir / host).rglob("*"):
            content = path.read_bytes() if path.is_file() else b""
            if path.suffix == ".key" or b"PRIVATE KEY" in content:
                digest = hashlib.sha256(content).hexdigest()
                seen.setdefault(digest, []).append(f"{host}/{path.relative_to(keys_dir / host)}")
    assert {digest: places for digest, places in seen.items() if len(places) > 1} == {}
    assert len(seen) == 2 + 2 * 3 + 4 * 2  # authority: TLS, X25519; edges 3 each; terminals 2
    ca_key = hashlib.sha256((keys_dir / "ca" / "ca.key").read_bytes()).hexdigest()
    assert ca_key not in seen
    assert not [p for host in HOSTS for p in (keys_dir / host).rglob("ca.key")]
    places = [place for places in seen.values() for place in places]
    assert [p for p in places if p.endswith("authority.key")] == ["cloud/uploads/authority.key"]
    assert [p for p in places if p.startswith("edge1/weights") or "weights/edge1.key" in p] == [
        "edge1/weights/edge1.key"
    ]


def test_private_keys_are_owner_only_and_folders_0700(keys_dir):
    private = [p for p in keys_dir.rglob("*.key")]
    assert len(private) == 17 and {_mode(p) for p in private} == {0o600}
    folders = [keys_dir, *(p for p in keys_dir.rglob("*") if p.is_dir())]
    assert {_mode(p) for p in folders} == {0o700}


def test_manifests_name_host_role_peers_and_run_independent_key_ids(keys_dir):
    t3 = json.loads((keys_dir / "t3" / "bundle.json").read_text())
    assert (t3["host"], t3["role"], t3["authority_host"], t3["managing_edge"]) == (
        "t3",
        "terminal",
        "cloud",
        "edge1",
    )
    edge1 = json.loads((keys_dir / "edge1" / "bundle.json").read_text())
    cloud = json.loads((keys_dir / "cloud" / "bundle.json").read_text())
    peer = t3["files"]["weights/edge1.pub"]
    assert {k: peer[k] for k in ("kind", "owner", "purpose", "algorithm")} == {
        "kind": "public-key",
        "owner": "edge1",
        "purpose": "weights-signing",
        "algorithm": "Ed25519",
    }
    # a key has one id everywhere: its .pub in one bundle, its .key in another, the index
    assert peer["key_id"] == edge1["files"]["weights/edge1.key"]["key_id"]
    assert (
        cloud["files"]["uploads/t3.pub"]["key_id"]
        == t3["files"]["uploads/t3.key"]["key_id"]
        == json.loads((keys_dir / "keys.json").read_text())["key_ids"]["uploads/t3.key"]
    )
    assert len(peer["key_id"]) == 16
    assert cloud["terminals"] == ["t1", "t2", "t3", "t4"] and cloud["edges"] == ["edge1", "edge2"]


def test_loaded_bundles_talk_to_each_other_and_to_no_one_else(keys_dir):
    keys = KeyFolder(keys_dir)
    authority = keys.load_bundle("cloud", "authority").authority()
    t3 = keys.load_bundle("t3", "terminal").terminal()
    t2 = keys.load_bundle("t2", "terminal").terminal()
    edge1 = keys.load_bundle("edge1", "edge").edge()
    assert authority.upload_opener(RUN).open(t3.upload_sealer(RUN).seal(b"u")).terminal_id == "t3"
    assert edge1.batch_opener(RUN).open(authority.batch_sealer(RUN).seal("edge1", b"b")).sequence
    signed = edge1.weights_signer(RUN).sign(b"w", 0)
    assert authority.weights_verifier("edge1", RUN).verify(signed).payload == b"w"
    assert t3.weights_verifier(RUN).verify(signed).version == 0
    assert t3.ack_verifier(RUN).verify(authority.ack_authenticator(RUN).authenticate("t3", 7)).ack
    with pytest.raises(Exception, match="wrong-signer"):  # t2 is edge2's
        t2.weights_verifier(RUN).verify(edge1.weights_signer(RUN).sign(b"w", 0))
    assert authority.supernode_public_keys["t1"] == keys_dir / "cloud" / "supernodes" / "t1.pub"
    assert authority.superlink_key == keys_dir / "cloud" / "superlink.key"
    assert t3.supernode_key == keys_dir / "t3" / "supernodes" / "t3.key"


def test_the_single_folder_view_finds_each_file_in_the_bundle_that_holds_it(keys_dir):
    keys = KeyFolder(str(keys_dir))
    assert keys.ca_certificate == keys_dir / "ca" / "ca.crt"
    assert keys.ca_key == keys_dir / "ca" / "ca.key"
    assert keys.superlink_key == keys_dir / "cloud" / "superlink.key"
    assert keys.supernode_key("t2") == keys_dir / "t2" / "supernodes" / "t2.key"
    assert keys.supernode_public_key("t2") == keys_dir / "cloud" / "supernodes" / "t2.pub"
    assert keys.terminal_upload_key("t4") == keys_dir / "t4" / "uploads" / "t4.key"
    assert keys.authority_upload_key == keys_dir / "cloud" / "uploads" / "authority.key"
    assert set(keys.terminal_upload_public_keys()) == {"t1", "t2", "t3", "t4"}
    assert (keys_dir / "ca" / "ca.crt").read_bytes() == (keys_dir / "t1" / "ca.crt").read_bytes()
    with pytest.raises(FileNotFoundError, match=r"t9/supernodes/t9\.key: missing .*fl-crb keys"):
        keys.require(keys.supernode_key("t9"))


def test_the_view_of_an_empty_folder_names_the_missing_ca_certificate(tmp_path):
    keys = KeyFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ca/ca\.crt: missing from keys folder"):
        keys.require(keys.ca_certificate, keys.superlink_certificate)
    assert "keys.json missing" in str(keys.superlink_certificate)


# -- HostBundle.load refuses, naming the file and the fix ---------------------------------------


@pytest.fixture
def t1_copy(keys_dir, tmp_path) -> Path:
    copy = tmp_path / "t1"
    shutil.copytree(keys_dir / "t1", copy)  # copytree keeps the modes
    return copy


def _refusal(path: Path, **kwargs) -> str:
    with pytest.raises(BundleError) as caught:
        HostBundle.load(path, **kwargs)
    return str(caught.value)


def test_load_refuses_a_folder_without_a_manifest(tmp_path):
    message = _refusal(tmp_path)
    assert f"{tmp_path}/bundle.json: missing" in message and "fl-crb keys --topology" in message


def test_load_refuses_another_role_or_host(t1_copy):
    assert "the bundle of terminal 't1', but an edge's is needed" in _refusal(t1_copy, role="edge")
    assert "copy DIR/t2/" in _refusal(t1_copy, host="t2")
    bundle = HostBundle.load(t1_copy, role="terminal", host="t1")
    with pytest.raises(BundleError, match="the bundle of terminal 't1', not an authority's"):
        bundle.authority()


def test_load_refuses_a_private_key_others_can_read(t1_copy):
    key = t1_copy / "uploads" / "t1.key"
    key.chmod(0o644)
    message = _refusal(t1_copy)
    assert f"{key}: private key readable by group or others (mode 0644)" in message
    assert f"fix: chmod 600 {key}" in message


def test_load_refuses_a_missing_file(t1_copy):
    (t1_copy / "weights" / "edge1.pub").unlink()
    message = _refusal(t1_copy)
    assert f"{t1_copy}/weights/edge1.pub: missing from the bundle of 't1'" in message
    assert "copy the whole bundle again from DIR/t1/" in message


def test_load_refuses_a_key_of_another_host_lying_in_the_bundle(t1_copy, keys_dir):
    shutil.copy2(keys_dir / "t2" / "uploads" / "t2.key", t1_copy / "uploads" / "t2.key")
    message = _refusal(t1_copy)
    assert f"{t1_copy}/uploads/t2.key: a private key bundle.json does not list" in message


def test_load_refuses_a_replaced_key(t1_copy, keys_dir):
    replaced = t1_copy / "weights" / "edge1.pub"
    replaced.write_bytes((keys_dir / "edge2" / "uploads" / "authority.pub").read_bytes())
    message = _refusal(t1_copy)
    assert f"{replaced}: expected an Ed25519 key, found" in message
    other_edge = json.loads((keys_dir / "t2" / "bundle.json").read_text())
    edge2_pub = keys_dir / "t2" / "weights" / "edge2.pub"
    replaced.write_bytes(edge2_pub.read_bytes())  # a real Ed25519 key, but edge2's
    message = _refusal(t1_copy)
    assert f"{replaced}: key id {other_edge['files']['weights/edge2.pub']['key_id']}" in message
    assert "but bundle.json records" in message


def test_load_refuses_a_manifest_listing_other_files_than_the_role_needs(t1_copy):
    manifest_path = t1_copy / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["uploads/authority.key"] = manifest["files"]["uploads/t1.key"]
    manifest_path.write_text(json.dumps(manifest))
    message = _refusal(t1_copy)
    assert "a terminal's bundle holds ['ca.crt'," in message
    assert "also lists ['uploads/authority.key'] and lacks []" in message


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda m: "not json", "not valid JSON"),
        (lambda m: {**m, "role": "relay"}, "role 'relay'; expected format 1 and a role in"),
        (lambda m: {k: v for k, v in m.items() if k != "managing_edge"}, "'managing_edge' missing"),
        (lambda m: {**m, "format": 2}, "format 2"),
    ],
)
def test_load_refuses_a_bad_manifest(t1_copy, edit, expected):
    manifest_path = t1_copy / "bundle.json"
    edited = edit(json.loads(manifest_path.read_text()))
    manifest_path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    message = _refusal(t1_copy)
    assert str(manifest_path) in message and expected in message and "--force" in message


# -- making them --------------------------------------------------------------------------------


def test_keys_are_not_replaced_unless_forced_and_the_old_single_folder_goes_too(tmp_path):
    folder = tmp_path / "keys"
    (folder / "uploads").mkdir(parents=True)
    (folder / "uploads" / "authority.key").write_text("an old layout's key")
    with pytest.raises(KeysExistError, match=r"keys/uploads/authority\.key"):
        create_keys(folder, _plan())
    assert not (folder / "cloud").exists()
    create_keys(folder, _plan(), force=True)
    assert not (folder / "uploads" / "authority.key").exists()
    before = (folder / "t1" / "uploads" / "t1.key").read_bytes()
    with pytest.raises(KeysExistError, match="pass --force to replace them all"):
        create_keys(folder, _plan())
    create_keys(folder, _plan(), force=True)
    assert (folder / "t1" / "uploads" / "t1.key").read_bytes() != before
    HostBundle.load(folder / "cloud", role="authority")


def test_forced_keys_for_fewer_hosts_remove_the_bundles_of_the_others(tmp_path):
    folder = tmp_path / "keys"
    create_keys(folder, _plan())
    fewer = plan_for_topology(load_topology(TINY).with_overrides(terminals=2), [])
    with pytest.raises(KeysExistError):
        create_keys(folder, fewer)
    create_keys(folder, fewer, force=True)
    assert sorted(p.name for p in folder.iterdir()) == [
        "ca",
        "cloud",
        "edge1",
        "edge2",
        "keys.json",
        "t1",
        "t2",
    ]


def test_a_host_named_like_the_ca_folder_is_refused():
    plan = _plan()
    with pytest.raises(ValueError, match="host name 'ca' is reserved for the CA's folder"):
        KeyPlan("ca", plan.supernodes, plan.terminals, plan.managing_edges)
    with pytest.raises(ValueError, match="terminal 't1' has no managing edge"):
        KeyPlan("cloud", plan.supernodes, plan.terminals, {})


def test_the_command_lists_every_bundle_and_where_the_ca_key_is(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert main(["keys", "--topology", str(TINY), "--out", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert f"CA private key: {folder}/ca/ca.key, in no bundle: keep it offline" in printed
    assert (
        "  t3 (terminal): ca.crt supernodes/t3.key uploads/t3.key uploads/authority.pub "
        "weights/edge1.pub bundle.json\n" in printed
    )
    assert (
        "  edge1 (edge): ca.crt supernodes/edge1.key batches/edge1.key weights/edge1.key "
        "uploads/authority.pub bundle.json\n" in printed
    )
    assert (
        "  cloud (authority): ca.crt superlink.crt superlink.key uploads/authority.key "
        "uploads/*.pub (5) supernodes/*.pub (6) batches/edge1.pub batches/edge2.pub "
        "weights/edge1.pub weights/edge2.pub bundle.json" in printed
    )
    assert os.path.isdir(folder / "t3")
