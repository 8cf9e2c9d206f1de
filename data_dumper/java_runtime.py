"""Finding the Java runtime that ``--engine=spark`` needs, and saying in one line how to get one.

Spark runs in a JVM; PySpark starts it from ``$JAVA_HOME/bin/java``, else from
the ``java`` on ``PATH``. PySpark 4 needs Java 17 or newer. This project takes
Java from the system (a Spark cluster already has one; Debian's
``openjdk-17-jre-headless`` serves a single machine), not from a JDK wheel.
"""

import os
import re
import shutil
import subprocess

MINIMUM_JAVA = 17

INSTALL_HINT = (
    f"install Java {MINIMUM_JAVA} or newer (e.g. apt-get install openjdk-17-jre-headless) "
    f"or point JAVA_HOME at one"
)


def java_executable():
    """The ``java`` PySpark would start: ``$JAVA_HOME/bin/java`` if set, else the one on PATH, or None."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def java_major_version(executable):
    """The major version (17, 21, ...) that ``executable -version`` reports, or None."""
    try:
        result = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # 'openjdk version "17.0.15" 2025-04-15', or '"1.8.0_392"' for Java 8.
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def missing_java_reason():
    """Why Spark cannot start here (one sentence), or None when a usable Java is found."""
    executable = java_executable()
    if executable is None:
        where = "in JAVA_HOME" if os.environ.get("JAVA_HOME") else "on PATH (and JAVA_HOME is not set)"
        return f"no Java runtime was found {where}; {INSTALL_HINT}"
    major = java_major_version(executable)
    if major is None:
        return f"{executable} -version did not run or named no version; {INSTALL_HINT}"
    if major < MINIMUM_JAVA:
        return f"{executable} is Java {major}, but Spark needs {MINIMUM_JAVA} or newer; {INSTALL_HINT}"
    return None
