#!/usr/bin/env bash
# Installs Debian's chromium for the web-UI browser test, when it is missing and we may (root + apt).
# Never fails the build: if the install is impossible the browser test skips with a clear message.
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian chromium for the browser test (apt-get) ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "WARNING: could not install chromium; the browser test will be skipped"
else
  echo "WARNING: /usr/bin/chromium is missing and cannot be installed here (needs root + apt); the browser test will be skipped"
fi
exit 0
