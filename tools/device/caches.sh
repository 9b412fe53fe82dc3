# Compile caches of the lent GPU machine (sourced by tools/device/gpu.sh, which says why): saved
# into $OUT/caches, stashed from a carried .device/caches, restored once per machine.
# HOME and OUT come from the caller; SM7X_CACHE_STASH moves the stash (tests).

CACHE_STASH="${SM7X_CACHE_STASH:-/root/sm7x-caches}"
CACHE_DIRS=("$HOME/.triton/cache" "$HOME/.cache/vllm/torch_compile_cache")

save_caches() {
  local dirs=() d
  for d in "${CACHE_DIRS[@]}"; do [ -d "$d" ] && dirs+=("${d#/}"); done
  [ ${#dirs[@]} -gt 0 ] || { echo "caches: nothing to save"; return 0; }
  mkdir -p "$OUT/caches"
  tar -C / -cf - "${dirs[@]}" | xz -T0 -6 | split -b 15M -d -a 1 - "$OUT/caches/device-caches.tar.xz.part-"
  local status="${PIPESTATUS[*]}"
  if [ "$status" != "0 0 0" ]; then  # a half-written set would restore as a corrupt archive
    rm -rf "$OUT/caches"
    echo "caches: save FAILED (tar, xz, split exited $status; more than 10 parts of 15 MiB?)"
    return 1
  fi
  local parts mib
  parts=$(ls "$OUT/caches" | wc -l)
  mib=$(du -sm "$OUT/caches" | cut -f1)
  echo "caches: $mib MiB in $parts part(s) under \$OUT/caches"
  # The run tool brings back at most 8 files and 64 MiB in all (logs included): 4 parts at most.
  [ "$parts" -le 4 ] || echo "caches: WARNING $parts parts ($mib MiB) will not all come back (8 files, 64 MiB)"
}

# From the carried .device/caches (stash-caches) or an earlier stash on this machine; once per machine.
restore_caches() {
  local source=""
  if compgen -G ".device/caches/device-caches.tar.xz.part-*" > /dev/null; then source=.device/caches
  elif compgen -G "$CACHE_STASH/device-caches.tar.xz.part-*" > /dev/null; then source=$CACHE_STASH
  fi
  [ -n "$source" ] && [ ! -f "$HOME/.sm7x-caches-restored" ] || return 0
  if cat "$source"/device-caches.tar.xz.part-* | xz -d | tar -C / -xf -; then
    touch "$HOME/.sm7x-caches-restored"
    echo "caches: restored from $source"
  else
    echo "caches: could not restore from $source (carrying on without them)"
  fi
}

stash_caches() {
  mkdir -p "$CACHE_STASH" && cp .device/caches/device-caches.tar.xz.part-* "$CACHE_STASH"/ && ls -la "$CACHE_STASH"
}
