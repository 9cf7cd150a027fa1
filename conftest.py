"""pytest set-up shared by tests/, lectures/ and solutions/ (the notebooks that nbval runs)."""
import os

# The notebooks run in the kernel of tests/kernels/ (`--nbval-kernel-name vizlib-accelerator` in
# the Makefile): their models on a simulated accelerator and the images that helpers make on the
# CPU, as on a GPU runtime (tests/simulated_accelerator.py).
_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")
os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (_TESTS, os.environ.get("JUPYTER_PATH")) if p)
