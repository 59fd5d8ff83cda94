"""`dataset=cifar10` fetching its archive from a real HTTP server on loopback (http.server in a thread) that
serves a small archive in the official cifar-10-python.tar.gz layout: success, wrong MD5, a connection that
drops mid-file, no server at all, broken archives. After any failure nothing partial is left under root."""
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading

import pytest
import torch

from deeprob_cli import UserError
from deeprob_cli.datasets.cifar10 import read_cifar10

from test_data import cifar_cfg, write_cifar10


def make_archive(tmp_path, leave_out=(), extra=None):
    """(bytes of a tar.gz laid out like the official one, the batches written into it)."""
    batches, _ = write_cifar10(tmp_path / "src")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted((tmp_path / "src" / "cifar-10-batches-py").iterdir()):
            if path.name not in leave_out:
                tar.add(path, arcname=f"cifar-10-batches-py/{path.name}")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), batches


class Mirror:
    """Serves one archive at /cifar-10-python.tar.gz; `drop_after` bytes sent, then the connection is cut."""

    def __init__(self, archive: bytes, drop_after=None, chunked=False):
        self.archive, self.drop_after, self.requests = archive, drop_after, 0
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if chunked else "HTTP/1.0"

            def do_GET(self):
                mirror.requests += 1
                if self.path != "/cifar-10-python.tar.gz":
                    self.send_error(404)
                    return
                self.send_response(200)
                if chunked:  # no size announced: one chunk that declares the whole archive, then the cut
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(f"{len(mirror.archive):x}\r\n".encode())
                else:
                    self.send_header("Content-Length", str(len(mirror.archive)))  # the whole size is announced
                    self.end_headers()
                self.wfile.write(mirror.archive[:mirror.drop_after])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/cifar-10-python.tar.gz"
        self.md5 = hashlib.md5(archive).hexdigest()


@pytest.fixture
def serve():
    servers = []

    def start(archive, drop_after=None, chunked=False):
        servers.append(Mirror(archive, drop_after, chunked))
        return servers[-1]

    yield start
    for mirror in servers:
        mirror.server.shutdown()
        mirror.server.server_close()


def closed_port_url():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/cifar-10-python.tar.gz"


def left_under(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_checks_md5_extracts_and_reads_then_never_fetches_again(tmp_path, serve):
    archive, batches = make_archive(tmp_path)
    mirror = serve(archive)
    root = tmp_path / "root"
    train, test, classes = read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5=mirror.md5))
    assert len(train) == 30 and classes[0] == "airplane"
    assert torch.equal(test.images, torch.from_numpy(batches["test_batch"][0].reshape(-1, 3, 32, 32)))
    assert left_under(root) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]  # no temp file or folder
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive
    read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5=mirror.md5))
    assert mirror.requests == 1


def test_an_archive_already_in_root_is_used_without_network(tmp_path):
    archive, _ = make_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(archive)  # copied by hand, offline
    cfg = cifar_cfg(root, download=True, url=closed_port_url(), md5=hashlib.md5(archive).hexdigest())
    assert len(read_cifar10(cfg)[0]) == 30


def test_wrong_md5_is_refused_and_nothing_is_kept(tmp_path, serve):
    mirror = serve(make_archive(tmp_path)[0])
    root = tmp_path / "root"
    with pytest.raises(UserError, match=f"the archive from {mirror.url} failed its MD5 check \\(got {mirror.md5}, "
                                        f"expected 0{{32}}\\); nothing was kept"):
        read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5="0" * 32))
    assert left_under(root) == []


def test_a_connection_dropped_mid_file_leaves_nothing(tmp_path, serve):
    archive, _ = make_archive(tmp_path)
    mirror = serve(archive, drop_after=len(archive) // 2)
    root = tmp_path / "root"
    with pytest.raises(UserError, match=f"the connection to {mirror.url} dropped after {len(archive) // 2:,} of "
                                        f"{len(archive):,} bytes; nothing was kept"):
        read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5=mirror.md5))
    assert left_under(root) == []


def test_a_full_disk_during_the_download_is_one_line_and_leaves_nothing(tmp_path, serve, monkeypatch):
    import builtins
    import errno

    archive, _ = make_archive(tmp_path)
    mirror, real_open = serve(archive), builtins.open

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(data[:100])  # a partial file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda f, mode="r", *a, **k: FullDisk(f, "wb") if ".part" in str(f)
                        else real_open(f, mode, *a, **k))
    root = tmp_path / "root"
    with pytest.raises(UserError, match="dataset.download: cannot write .*/root/.cifar-10-python.tar.gz.part[0-9]+ "
                                        "\\(No space left on device\\); free space there"):
        read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5=mirror.md5))
    assert left_under(root) == []


def test_a_chunked_transfer_cut_mid_chunk_is_one_line_and_leaves_nothing(tmp_path, serve):
    archive, _ = make_archive(tmp_path)
    mirror = serve(archive, drop_after=len(archive) // 2, chunked=True)
    root = tmp_path / "root"
    with pytest.raises(UserError, match=f"dataset.download: could not fetch {mirror.url} \\(the connection dropped "
                                        f"mid-file\\); without internet"):
        read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5=mirror.md5))
    assert left_under(root) == []


def test_offline_is_one_line_naming_the_url_and_the_manual_way(tmp_path):
    url, root = closed_port_url(), tmp_path / "root"
    with pytest.raises(UserError) as caught:
        read_cifar10(cifar_cfg(root, download=True, url=url, md5="0" * 32))
    line = str(caught.value)
    assert line.startswith(f"dataset.download: could not fetch {url} (") and "\n" not in line
    assert f"download {url} elsewhere and put it in {root}" in line
    assert f"{root / 'cifar-10-batches-py'} exists" in line and "dataset=image_folder" in line
    assert left_under(root) == []


def test_an_incomplete_folder_is_named_not_silently_redownloaded_over(tmp_path, serve):
    mirror = serve(make_archive(tmp_path)[0])
    write_cifar10(tmp_path / "root")
    (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_4").unlink()  # e.g. an interrupted hand copy
    with pytest.raises(UserError, match="cifar-10-batches-py is incomplete \\(missing data_batch_4\\); delete it "
                                        "\\(dataset.download=true then fetches a fresh copy\\)"):
        read_cifar10(cifar_cfg(tmp_path / "root", download=True, url=mirror.url, md5=mirror.md5))
    assert mirror.requests == 0


def test_a_wrong_url_on_a_live_server_is_one_line(tmp_path, serve):
    mirror = serve(make_archive(tmp_path)[0])
    url = mirror.url.replace("cifar-10-python", "cifar-100-python")
    with pytest.raises(UserError, match=f"dataset.download: could not fetch {url} \\(Not Found\\); without internet"):
        read_cifar10(cifar_cfg(tmp_path / "root", download=True, url=url, md5=mirror.md5))
    assert left_under(tmp_path / "root") == []


def test_download_false_keeps_the_old_refusal_and_asks_nothing(tmp_path, serve):
    mirror = serve(make_archive(tmp_path)[0])
    with pytest.raises(UserError, match="no CIFAR-10 at .* add dataset.download=true"):
        read_cifar10(cifar_cfg(tmp_path / "root", download=False, url=mirror.url, md5=mirror.md5))
    assert mirror.requests == 0


BROKEN = [  # (how the archive is broken, what the one line must say)
    ("truncated", "cannot extract"),  # valid MD5 of a cut file: extraction fails after some members
    ("incomplete", "holds no complete cifar-10-batches-py/ (missing test_batch)"),
    ("escaping", "cannot extract"),  # a member named ../outside: tarfile's "data" filter refuses it
]


@pytest.mark.parametrize("kind, message", BROKEN, ids=[k for k, _ in BROKEN])
def test_a_broken_archive_with_a_matching_md5_leaves_no_half_extracted_folder(tmp_path, serve, kind, message):
    if kind == "truncated":
        archive = make_archive(tmp_path)[0]
        archive = archive[:int(len(archive) * 0.8)]
    else:
        archive = make_archive(tmp_path, leave_out={"test_batch"} if kind == "incomplete" else (),
                               extra={"../outside": b"x"} if kind == "escaping" else None)[0]
    mirror = serve(archive)
    root = tmp_path / "root"
    with pytest.raises(UserError, match=re.escape(message)):
        read_cifar10(cifar_cfg(root, download=True, url=mirror.url, md5=mirror.md5))
    assert left_under(root) == ["cifar-10-python.tar.gz"]  # the verified archive only: no temp folder
    assert not (tmp_path / "outside").exists()


def test_the_cli_reports_offline_in_one_line_exit_2(tmp_path):
    from conftest import run_cli

    url = closed_port_url()
    result = run_cli("train", "dataset=cifar10", f"dataset.url={url}", "dataset.root=data", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"deeprob train: error: dataset.download: could not "
                                                            f"fetch {url}")


def test_the_readme_command_trains_from_a_local_mirror(tmp_path, serve):
    from conftest import FAST, run_cli, run_dirs, summary

    mirror = serve(make_archive(tmp_path)[0])
    fast = [a for a in FAST if not a.startswith("dataset")]
    run_cli("train", *fast, "dataset=cifar10", f"dataset.url={mirror.url}", f"dataset.md5={mirror.md5}",
            "dataset.val_size=6", "trainer.batch_size=8", "activation=gelu", "init=kaiming", cwd=tmp_path)
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file() and mirror.requests == 1
    assert summary(run_dirs(tmp_path / "runs")[0])["status"] == "completed"


def test_the_progress_bar_counts_every_byte_and_ctrl_c_mid_download_leaves_nothing(tmp_path, serve, monkeypatch):
    import tqdm

    import numpy as np

    archive, _ = make_archive(tmp_path, extra={"noise": np.random.default_rng(0).bytes(2_500_000)})
    assert len(archive) > 2 * 2**20  # more than two reads of 1 MiB: the interrupt comes between reads
    mirror, bars = serve(archive), []

    class Bar(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})
            self.counted, self.total_asked = 0, kwargs["total"]
            bars.append(self)

        def update(self, n=1):
            self.counted += n
            if interrupt and self.counted > len(archive) // 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    cfg = cifar_cfg(tmp_path / "root", download=True, url=mirror.url, md5=mirror.md5)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        read_cifar10(cfg)
    assert left_under(tmp_path / "root") == []
    interrupt = False
    read_cifar10(cfg)
    assert (bars[-1].total_asked, bars[-1].counted) == (len(archive), len(archive))


def test_ctrl_c_during_extraction_leaves_no_half_extracted_folder(tmp_path, serve, monkeypatch):
    mirror = serve(make_archive(tmp_path)[0])
    original = tarfile.TarFile.extractall

    def stop_halfway(self, path, *args, **kwargs):
        members = self.getmembers()
        original(self, path, members=members[:len(members) // 2], **kwargs)
        assert any((tmp_path / "root").rglob("data_batch_*"))  # really half-extracted at this point
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", stop_halfway)
    with pytest.raises(KeyboardInterrupt):
        read_cifar10(cifar_cfg(tmp_path / "root", download=True, url=mirror.url, md5=mirror.md5))
    assert left_under(tmp_path / "root") == ["cifar-10-python.tar.gz"]  # verified archive kept, no folder
