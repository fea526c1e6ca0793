#!/usr/bin/env bash
# The whole test suite, as the README documents it. It installs what the
# tests need (Dovecot IMAP/POP3 from Debian's packages; the tests start
# their own instances on 127.0.0.1), then runs vet, gofmt, the race-enabled
# tests and a short run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd dovecot-pop3d)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

go vet ./...
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi

go test -race -count=1 -timeout 30m ./...

# The Kubernetes manifests (deploy/kubernetes), checked against the API's
# types in a module of their own (the main module does not depend on them).
(cd deploy/kubernetes/check && go vet ./... && go test -count=1 ./...)

# Fuzz targets, briefly (the committed corpora run in the step above too).
fuzz() { go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-100000x}" "$1"; }
fuzz ./internal/maildir FuzzDecodePlusPlus
fuzz ./internal/maildir FuzzFolderDir
fuzz ./internal/maildir FuzzSplitName
fuzz ./migrate FuzzMessageIDFromHeader
fuzz ./migrate FuzzMessageIDPlain
fuzz ./migrate FuzzCountBareLF
fuzz ./sinks FuzzEscapeComponent
fuzz ./internal/pop3conn FuzzDotReader
fuzz ./checkpoint FuzzDecode
if grep -q 'func FuzzReader' internal/mbox/*_test.go 2>/dev/null; then
  fuzz ./internal/mbox FuzzReader
fi
