# Reads a dkms.conf the way DKMS does: sourced by bash with the variables
# DKMS gives it, then the results DKMS derives from it (the make command
# chosen by MAKE_MATCH, the built modules with their defaults, the patches
# for this kernel, the regular-expression exclusions). Everything the file
# itself prints goes to stderr; the results go to fd 3 as NUL-separated
# name/value pairs.
#
# Arguments: dkms.conf, kernelver, arch, kernel_source_dir, dkms_tree,
# source_tree, module, module_version.
exec 3>&1 1>&2
conf=$1
kernelver=$2
arch=$3
kernel_source_dir=$4
dkms_tree=$5
source_tree=$6
module=$7
module_version=$8
kernel_config=$kernel_source_dir/.config

. "$conf"

out() { printf '%s\0%s\0' "$1" "$2" >&3; }

out PACKAGE_NAME "$PACKAGE_NAME"
out PACKAGE_VERSION "$PACKAGE_VERSION"
out CLEAN "$CLEAN"
out PRE_BUILD "$PRE_BUILD"
out POST_BUILD "$POST_BUILD"
out BUILD_EXCLUSIVE_KERNEL "$BUILD_EXCLUSIVE_KERNEL"
out BUILD_EXCLUSIVE_KERNEL_MIN "$BUILD_EXCLUSIVE_KERNEL_MIN"
out BUILD_EXCLUSIVE_KERNEL_MAX "$BUILD_EXCLUSIVE_KERNEL_MAX"
out BUILD_EXCLUSIVE_ARCH "$BUILD_EXCLUSIVE_ARCH"
out BUILD_EXCLUSIVE_CONFIG "$BUILD_EXCLUSIVE_CONFIG"

make_command=
[[ ${MAKE_MATCH[0]} ]] || make_command=${MAKE[0]}
for ((i = 0; i < ${#MAKE[@]}; i++)); do
    [[ ${MAKE[$i]} && ${MAKE_MATCH[$i]} && $kernelver =~ ${MAKE_MATCH[$i]} ]] &&
        make_command=${MAKE[$i]}
done
out make_command "$make_command"

[[ $BUILD_EXCLUSIVE_KERNEL && ! $kernelver =~ $BUILD_EXCLUSIVE_KERNEL ]] &&
    out excluded_kernel 1
[[ $BUILD_EXCLUSIVE_ARCH && ! $arch =~ $BUILD_EXCLUSIVE_ARCH ]] &&
    out excluded_arch 1

for ((i = 0; i < ${#PATCH[@]}; i++)); do
    if [[ ${PATCH[$i]} && (! ${PATCH_MATCH[$i]} || $kernelver =~ ${PATCH_MATCH[$i]}) ]]; then
        out patch "${PATCH[$i]}"
    fi
done

count=0
for n in ${#BUILT_MODULE_NAME[@]} ${#BUILT_MODULE_LOCATION[@]} \
    ${#DEST_MODULE_NAME[@]} ${#DEST_MODULE_LOCATION[@]}; do
    ((n > count)) && count=$n
done
for ((i = 0; i < count; i++)); do
    name=${BUILT_MODULE_NAME[$i]}
    [[ ! $name ]] && ((${#DEST_MODULE_LOCATION[@]} == 1)) && name=$PACKAGE_NAME
    out module_name "$name"
    out module_location "${BUILT_MODULE_LOCATION[$i]}"
done
exit 0
