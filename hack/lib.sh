# Shared by the scripts that build a Go tool pinned by a scratch module
# (hack/tools/<dir>/go.mod) into BIN_DIR, rebuilding only when the pin moves:
# hack/helm.sh and hack/step-ca.sh. Source it, then:
#
#   tool_init NAME TOOLS_SUBDIR [BIN_DIR]   sets tools_dir, bin, stamp, go_bin
#   mod_version MODULE                      the version the scratch go.mod pins
#   tool_stamp TEXT                         TEXT plus the scratch go.sum's checksum
#   tool_up_to_date WANT VERSION            exits 0 when bin was built for WANT
#   tool_build WANT LDFLAGS PACKAGE         builds PACKAGE into bin, records WANT

tool_init() {
	local lib_dir repo_root bin_dir
	tool_name="$1"
	lib_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
	repo_root="$(cd "${lib_dir}/.." && pwd)"
	tools_dir="${lib_dir}/tools/$2"
	bin_dir="${3:-${repo_root}/bin}"
	mkdir -p "${bin_dir}"
	bin_dir="$(cd "${bin_dir}" && pwd)"
	bin="${bin_dir}/${tool_name}"
	stamp="${bin_dir}/.${tool_name}-version"
	go_bin="${GO:-go}"
	if ! command -v "${go_bin}" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		go_bin=/usr/local/go/bin/go
	fi
}

# mod_version MODULE prints MODULE's version as pinned in the scratch go.mod
# (either "require M v" on one line or "M v" inside a require block).
mod_version() {
	awk -v m="$1" '$1 == "require" && $2 == m {print $3} $1 == m {print $2}' "${tools_dir}/go.mod" | head -n1
}

# tool_stamp folds the scratch go.sum into the stamp, so any change of a
# dependency's pin rebuilds too.
tool_stamp() {
	printf '%s gosum=%s' "$1" "$(cksum <"${tools_dir}/go.sum" | awk '{print $1}')"
}

tool_up_to_date() {
	if [ -x "${bin}" ] && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "$1" ]; then
		echo "${tool_name} $2 already built: ${bin}"
		exit 0
	fi
}

tool_build() {
	local want="$1" ldflags="$2" pkg="$3" start
	start="$(date +%s)"
	# Not local: the EXIT trap runs after this function has returned.
	tool_tmp="${bin}.tmp.$$"
	trap 'rm -f "${tool_tmp}"' EXIT
	(
		cd "${tools_dir}"
		# Building from the scratch module's directory with GOWORK=off uses its
		# go.mod, never the root module's; -mod=readonly never rewrites go.mod/go.sum.
		GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly" CGO_ENABLED=0 \
			"${go_bin}" build -trimpath -ldflags "${ldflags}" -o "${tool_tmp}" "${pkg}"
	)
	mv -f "${tool_tmp}" "${bin}"
	printf '%s\n' "${want}" >"${stamp}"
	echo "built ${bin} in $(( $(date +%s) - start ))s"
}
