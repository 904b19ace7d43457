# Run on the host by tasks/verify.yml (python3 -c): stage the files of
# the run and check them with `sdme verify`, in one round trip.
#
# argv: /etc/sdme, the rest of the search path (colon-separated).
# stdin: JSON {"remove": [PATH...], "files": [{"file": PATH, "content":
# TEXT}...], "check": [PATH...]}, each PATH relative to /etc/sdme and
# already checked by the role (a file name, or NAME.TYPE.d/FILE.conf).
#
# The staging directory is a copy of /etc/sdme with the run's removals
# and files applied; it stands in for /etc/sdme on the search path
# (SDME_UNIT_DIRS), so the run's files are checked together and against
# the host's others. sdme's messages are printed with /etc/sdme in place
# of the staging directory; the exit status is sdme's. The directory is
# removed in every case; nothing else is written.
import json
import os
import shutil
import subprocess
import sys
import tempfile

etc, lower = sys.argv[1], sys.argv[2]
run = json.load(sys.stdin)
stage = tempfile.mkdtemp(prefix="sdme-ansible-")
try:
    root = os.path.join(stage, "etc")
    if os.path.isdir(etc):
        shutil.copytree(etc, root, symlinks=True)
    else:
        os.mkdir(root)
    for rel in run["remove"]:
        p = os.path.join(root, rel)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.remove(p)
    for f in run["files"]:
        p = os.path.join(root, f["file"])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        # A link there (a mask, /dev/null) is replaced, as the copy
        # module replaces it, not written through.
        if os.path.islink(p):
            os.remove(p)
        with open(p, "w", encoding="utf-8") as out:
            out.write(f["content"])
    env = dict(os.environ, SDME_UNIT_DIRS=root + ":" + lower)
    argv = ["sdme", "verify"] + [os.path.join(root, c) for c in run["check"]]
    try:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        print("sdme is not installed on this host (see sdme_package)")
        sys.exit(127)
    sys.stdout.write((r.stdout + r.stderr).replace(root + "/", etc + "/"))
    sys.exit(r.returncode)
finally:
    shutil.rmtree(stage, ignore_errors=True)
