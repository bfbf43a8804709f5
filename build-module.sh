#!/bin/bash
# build-module.sh TREE CC_OPT OUT: builds ngx_http_flowscale_module.so in a
# copy of Debian's nginx-dev tree, configured like /usr/sbin/nginx.
set -euo pipefail

tree=$1 ccopt=$2 out=$3
top=$(cd "$(dirname "$0")" && pwd)

if [ ! -f "$tree/objs/Makefile" ] || [ "$top/config" -nt "$tree/objs/Makefile" ]
then
    rm -rf "$tree"
    mkdir -p "$(dirname "$tree")"
    cp -r /usr/share/nginx/src "$tree"
    cd "$tree"
    source ./conf_flags
    ./configure "${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$top" \
        --with-cc-opt="-g -Wall -Werror $ccopt" ${ccopt:+--with-ld-opt="$ccopt"} \
        > configure.log 2>&1 || { tail -20 configure.log; exit 1; }
fi

cd "$tree"
make -s -f objs/Makefile modules
mkdir -p "$(dirname "$out")"
# a new file, not a rewrite: a running nginx has the old one mapped
cp objs/ngx_http_flowscale_module.so "$out.tmp"
mv -f "$out.tmp" "$out"
echo "built $out"
