"""Where the checkout is, for tests that run its programs or read its files; the folders
of a test's own (a temporary directory, a config folder)."""
import os
import shutil
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def temp_dir(test) -> str:
    """A temporary directory, removed after ``test`` (a trial TestCase). Not test.mktemp():
    under pytest that lands in the checkout."""
    folder = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, folder, True)
    return folder


def private_config(test, folder=None) -> str:
    """$CHOIR_CONFIG_DIR set to ``folder`` [default: a temporary directory] for ``test``
    (a trial TestCase) and for the programs it starts, restored afterwards; -> the folder."""
    folder = folder or temp_dir(test)
    old = os.environ.get("CHOIR_CONFIG_DIR")
    os.environ["CHOIR_CONFIG_DIR"] = folder

    def restore():
        if old is None:
            os.environ.pop("CHOIR_CONFIG_DIR", None)
        else:
            os.environ["CHOIR_CONFIG_DIR"] = old
    test.addCleanup(restore)
    return folder
