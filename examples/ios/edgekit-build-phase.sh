#!/bin/bash
# Xcode Run Script build phase: build the model with edgekit, copy the artifacts into the app bundle.
#
# In Xcode: target > Build Phases > + > New Run Script Phase, before "Copy Bundle Resources":
#   Shell: /bin/bash     Script: "${SRCROOT}/../examples/ios/edgekit-build-phase.sh"
#   Input Files:  $(SRCROOT)/../ml/edgekit.toml   $(SRCROOT)/../ml/model.keras
#   Output Files: $(BUILT_PRODUCTS_DIR)/$(UNLOCALIZED_RESOURCES_FOLDER_PATH)/model.tflite
# With input and output files listed Xcode skips the phase when nothing changed; edgekit
# itself also does nothing then. On Xcode 15+, turn off "User Script Sandboxing"
# (ENABLE_USER_SCRIPT_SANDBOXING = NO) for this target: the script reads ../ml.
#
# Settings (environment): EDGEKIT_CONFIG (default: $SRCROOT/../ml/edgekit.toml),
# EDGEKIT_TARGET (default: cpu), EDGEKIT_VENV (a virtualenv holding edgekit), EDGEKIT (the command).
set -euo pipefail

config="${EDGEKIT_CONFIG:-${SRCROOT}/../ml/edgekit.toml}"
target="${EDGEKIT_TARGET:-cpu}"
# Xcode runs scripts with a minimal PATH: add a virtualenv's and Homebrew's bin directories.
export PATH="${EDGEKIT_VENV:+${EDGEKIT_VENV}/bin:}${PATH}:/opt/homebrew/bin:/usr/local/bin"
edgekit="${EDGEKIT:-edgekit}"

if ! command -v "${edgekit}" >/dev/null; then
    echo "error: edgekit not found; pip install 'edgekit[all]' or set EDGEKIT_VENV" >&2
    exit 1
fi

# Exits 1 when a budget or verification check fails, 2 on bad config: either fails the Xcode build.
"${edgekit}" build -c "${config}" --only "${target}" -q

dist="$(dirname "${config}")/dist"   # [output] dir in edgekit.toml
resources="${BUILT_PRODUCTS_DIR}/${UNLOCALIZED_RESOURCES_FOLDER_PATH}"
mkdir -p "${resources}"
cp "${dist}/${target}/"*.tflite "${resources}/"
# Tensor names, int8 scale/zero point, preprocessing and labels, for the app to read at run time.
cp "${dist}/manifest.json" "${resources}/edgekit-manifest.json"
echo "edgekit: copied ${target} artifacts into ${resources}"
