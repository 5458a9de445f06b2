#!/usr/bin/env bash
# Refreshes the third-party browser files under app/static/vendor/ from npm (run by a maintainer;
# the files are committed, so neither installing nor serving efnf needs npm or the internet).
# Each package is fetched as its published tarball (`npm pack`, no dependency resolution) and
# only the minified bundle, its stylesheet and its licence are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
SWAGGER_UI=swagger-ui-dist@5.36.0
REDOC=redoc@2.5.2  # 3.x's standalone bundle is 2.3 MB; 2.5 renders FastAPI's <redoc> tag in 0.9 MB
UPLOT=uplot@1.6.32
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unpack() {  # unpack PACKAGE DIR: the npm tarball of PACKAGE, unpacked into $work/DIR
    (cd "$work" && npm pack --silent "$1" >/dev/null && mkdir "$2" && tar xzf ./*.tgz -C "$2" && rm ./*.tgz)
}
vendor=app/static/vendor
rm -rf "$vendor" && mkdir -p "$vendor/swagger-ui" "$vendor/redoc" "$vendor/uplot"
unpack "$SWAGGER_UI" swagger
cp "$work"/swagger/package/{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css} \
    "$work"/swagger/package/{LICENSE,NOTICE,favicon-32x32.png} "$vendor/swagger-ui/"
unpack "$REDOC" redoc
cp "$work"/redoc/package/bundles/{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} \
    "$work"/redoc/package/LICENSE "$vendor/redoc/"
unpack "$UPLOT" uplot
cp "$work"/uplot/package/dist/{uPlot.iife.min.js,uPlot.min.css} "$work"/uplot/package/LICENSE \
    "$vendor/uplot/"
# The source maps are not shipped: drop the comments that would make a browser ask for them.
sed -i '/^\/\/# sourceMappingURL=/d' "$vendor"/*/*.js
# ReDoc's sidebar credit shows a logo from its CDN (hidden when it fails to load): an empty
# picture instead, so that the docs pages ask nothing of any other host.
sed -i 's|https://cdn.redoc.ly/redoc/logo-mini.svg|data:image/svg+xml,%3Csvg%20xmlns=%22http://www.w3.org/2000/svg%22/%3E|' \
    "$vendor/redoc/redoc.standalone.js"
printf '%s\n' "$SWAGGER_UI" "$REDOC" "$UPLOT" > "$vendor/VERSIONS"
du -sh "$vendor"/*
