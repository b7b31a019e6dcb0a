#!/usr/bin/env bash
# The system packages the test suite needs beyond pip, installed when missing (README command 2):
#   g++, python3.X-dev     DeepSpeed compiles its CPU ops on first use (C++ and Python.h of the
#                          python that runs the tests)
#   chromium, chromedriver the dashboard's browser test (tests/e2e/test_dashboard.py)
#   libgl1, libglib2.0-0   opencv-python's shared libraries (rapidocr, the OCR reward, imports it)
# With everything present it does nothing and needs no privileges. Otherwise it runs apt-get
# (Debian, Ubuntu) as root, or through sudo (which may ask for your password); elsewhere it
# names the packages to install and fails. On Ubuntu, chromium comes as a snap (snapd needed).
set -euo pipefail

have_browser() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -x /snap/bin/chromium ]; }
have_driver() { command -v chromedriver >/dev/null || [ -x /snap/bin/chromium.chromedriver ] || [ -x /usr/lib/chromium-browser/chromedriver ]; }

ubuntu=false
os_release=${OS_RELEASE:-/etc/os-release}  # (tests point it elsewhere)
if [ -r "$os_release" ]; then
  . "$os_release"
  case " ${ID:-} ${ID_LIKE:-} " in *" ubuntu "*) ubuntu=true ;; esac
fi
missing=()
# a shared library the loader knows (LDCONFIG: tests point it elsewhere)
libs=$("${LDCONFIG:-/sbin/ldconfig}" -p 2>/dev/null || true)
have_lib() { [[ "$libs" == *"$1 "* ]]; }
command -v g++ >/dev/null || missing+=(g++)
have_lib libGL.so.1 || missing+=(libgl1)
have_lib libgthread-2.0.so.0 || missing+=(libglib2.0-0)
python=$(command -v python3 || command -v python || true)
if [ -n "$python" ]; then  # Python.h of this interpreter (a venv's: its base python's)
  include='' dev=''
  read -r include dev < <("$python" -c 'import sys, sysconfig; print(sysconfig.get_paths()["include"], "python%d.%d-dev" % sys.version_info[:2])') || true
  if [ -n "$dev" ] && [ ! -f "$include/Python.h" ]; then missing+=("$dev"); fi
fi
if $ubuntu; then
  have_browser || missing+=(chromium-browser)
  have_driver || missing+=(chromium-chromedriver)
else
  have_browser || missing+=(chromium)
  have_driver || missing+=(chromium-driver)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: g++, Python headers, libGL, glib, chromium and chromedriver are present"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "system packages missing: ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "system packages missing: ${missing[*]}; installing them needs root or sudo:" >&2
  echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "system packages: installing ${missing[*]} (apt-get${as_root:+ via ${as_root[*]}})"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
