#!/bin/bash
# tools/bench/repos.sh — repository mirrors by hand: one 512 MiB file GET through `ferry serve` /repos/ vs
# `python3 -m http.server` on the same file, and `apt-get update` + `apt-get download` of the apt fixture
# (tools/fixtures/apt-repo.sh, built by the test suite) through /repos/ vs http.server on the source repository.
# Needs a release build (`cargo build --release -p ferry-cli`), curl, bc, python3. Loopback only.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
F=${FERRY:-$here/target/release/ferry}
FX=$here/target/ferry-fixtures/apt-repo
W=${WORK:-/var/tmp/ferry-rbench}; rm -rf $W; mkdir -p $W/tree
head -c 536870912 /dev/urandom > $W/tree/big.bin
$F --store $W/store --no-progress init >/dev/null
$F --store $W/store --no-progress add big@1 dir:$W/tree >/dev/null
$F --store $W/store --no-progress add deb@1 apt:$FX/repo >/dev/null
RUST_LOG=warn $F --store $W/store serve --listen 127.0.0.1:0 > $W/serve.out 2>/dev/null &
FP=$!
(cd $W/tree && exec python3 -u -m http.server 0 --bind 127.0.0.1 > $W/py.out 2>/dev/null) &
PP=$!
(cd $FX/repo && exec python3 -u -m http.server 0 --bind 127.0.0.1 > $W/py2.out 2>/dev/null) &
PP2=$!
sleep 2
FA=$(sed -n 's#listening on http://##p' $W/serve.out)
PA=127.0.0.1:$(awk '{print $6}' $W/py.out)
PA2=127.0.0.1:$(awk '{print $6}' $W/py2.out)
cat $W/tree/big.bin > /dev/null
get() { curl -s -o /dev/null -w '%{time_total} %{speed_download}\n' "$1"; }
get http://$FA/repos/big/1/big.bin >/dev/null; get http://$PA/big.bin >/dev/null
for i in 1 2 3; do
  echo "ferry  $(get http://$FA/repos/big/1/big.bin)"
  echo "python $(get http://$PA/big.bin)"
done
echo "ferry sha $(curl -s http://$FA/repos/big/1/big.bin | sha256sum | cut -c1-16) src $(sha256sum $W/tree/big.bin | cut -c1-16)"
apt_run() { # NAME URL
  A=$W/apt-$1-$RANDOM; mkdir -p $A/empty.d $A/state/lists/partial $A/cache/archives/partial $A/debs
  echo "deb [signed-by=$FX/key.gpg] $2 stable main contrib" > $A/sources.list
  O="-o Dir::Etc::sourcelist=$A/sources.list -o Dir::Etc::sourceparts=$A/empty.d -o Dir::State=$A/state -o Dir::Cache=$A/cache -o Acquire::Languages=none -o Debug::NoLocking=1"
  s=$(date +%s.%N)
  apt-get $O update >/dev/null 2>&1
  (cd $A/debs && apt-get $O download base-files libssl3 zlib1g netbase libnghttp2-14 >/dev/null 2>&1)
  e=$(date +%s.%N)
  echo "$1 apt update+download: $(echo "$e - $s" | bc) s, $(ls $A/debs | wc -l) debs"
}
for i in 1 2 3; do apt_run ferry http://$FA/repos/deb/1; apt_run python http://$PA2; done
grep VmHWM /proc/$FP/status
kill $FP $PP $PP2
