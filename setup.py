"""Installs hrpose from lib/ and builds the optional compiled OKS-NMS extension."""

from setuptools import Extension, find_packages, setup


def oks_nms_extensions():
    """The Cython OKS-NMS extension, or none when Cython or NumPy is missing at build time.

    The extension is optional: a failed compile only warns, and hrpose falls back to its NumPy
    implementation at import time (with one warning), so installing never fails for want of a
    compiler.
    """
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError:
        print("hrpose: Cython or NumPy not available, skipping the compiled OKS-NMS extension")
        return []
    extension = Extension(
        "hrpose.nms._oks_nms",
        ["lib/hrpose/nms/_oks_nms.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
        optional=True,
    )
    return cythonize([extension], compiler_directives={"language_level": "3"}, quiet=True)


setup(
    name="hrpose",
    version="0.1.0",
    description="HRNet-family 2-D human pose estimation (top-down and bottom-up) in PyTorch",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    ext_modules=oks_nms_extensions(),
    python_requires=">=3.10",
    zip_safe=False,
)
