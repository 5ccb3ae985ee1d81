package prodshape

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"blackfriday.local/tooling/stack/valkey"
)

// valkeyImage reports whether a container runs Valkey or Redis.
func valkeyImage(image string) bool {
	return strings.Contains(image, "valkey") || strings.Contains(image, "redis")
}

// valkeyIgnored are valkey.conf directives the local server takes from the
// launcher instead: its address, its directories and files, persistence
// (AppendOnly carries the manifest's choice).
var valkeyIgnored = []string{"bind", "port", "protected-mode", "dir", "logfile", "daemonize",
	"aclfile", "appendonly", "appendfsync", "appenddirname", "save", "pidfile"}

// valkey prepares the local Valkey from the StatefulSet that runs it: its
// init containers run here (render-acl.sh writes the ACL file from the
// rules in the ConfigMap and local passwords from the Secret), its
// valkey.conf and arguments become the server's settings, and the user
// that may do everything is the launcher's for PING and SHUTDOWN. It
// returns the pod that stands for it, whose port is known once it runs.
func (sh *Shape) valkey(ctx context.Context, m *Manifest, sec secrets) (*Pod, valkey.Config, error) {
	var w Workload
	var c Container
	found := false
	for _, s := range m.StatefulSets {
		if i := slices.IndexFunc(s.Spec.Template.Spec.Containers, func(c Container) bool { return valkeyImage(c.Image) }); i >= 0 {
			w, c, found = s, s.Spec.Template.Spec.Containers[i], true
			break
		}
	}
	if !found {
		return nil, valkey.Config{}, fmt.Errorf("prodshape: overlay %s has no Valkey StatefulSet", sh.cfg.Overlay)
	}
	if v := valkey.InstalledVersion(); v != "" {
		sh.missing("StatefulSet %s: image %s; locally %s", w.Metadata.Name, c.Image, v)
	}
	pod := &Pod{Name: w.Metadata.Name + "-0", Workload: w.Metadata.Name, Kind: "StatefulSet", Container: c.Name, Stack: true}
	for _, p := range c.Ports {
		pod.Ports = append(pod.Ports, Port{Name: p.Name, ContainerPort: p.ContainerPort})
	}
	if len(pod.Ports) != 1 {
		return nil, valkey.Config{}, fmt.Errorf("prodshape: Valkey's container declares %d ports, want one", len(pod.Ports))
	}
	volumes := filepath.Join(stateDir(sh.cfg.Dir), pod.Name, "volumes")
	// Every volume the containers mount, made local up front.
	paths := map[string]string{} // mount path -> local directory
	for _, cc := range append(slices.Clone(w.Spec.Template.Spec.InitContainers), c) {
		e := &podEnv{m: m, w: w, c: cc, pod: pod, ns: w.Metadata.Namespace, secrets: sec, volumes: volumes}
		for _, vm := range cc.VolumeMounts {
			if !slices.ContainsFunc(w.Spec.Template.Spec.Volumes, func(v Volume) bool { return v.Name == vm.Name }) {
				// A volumeClaimTemplate's (data): the launcher's Valkey
				// keeps its data in its own directory.
				continue
			}
			dir := filepath.Join(volumes, vm.Name)
			if err := e.volume(vm.Name, dir); err != nil {
				return nil, valkey.Config{}, err
			}
			paths[vm.MountPath] = dir
		}
	}
	local := func(p string) string {
		for mount, dir := range paths {
			if rel, ok := strings.CutPrefix(p, strings.TrimSuffix(mount, "/")+"/"); ok {
				return filepath.Join(dir, rel)
			}
		}
		return p
	}
	// The ACL file is where valkey.conf says, in its local volume.
	var conf string
	var cfg valkey.Config
	for _, a := range c.Args {
		if strings.HasSuffix(a, ".conf") {
			conf = local(a)
		}
	}
	var aclFile string
	if conf != "" {
		b, err := os.ReadFile(conf)
		if err != nil {
			return nil, cfg, fmt.Errorf("prodshape: Valkey's config: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || strings.HasPrefix(f[0], "#") {
				continue
			}
			switch key := strings.ToLower(f[0]); {
			case key == "aclfile" && len(f) == 2:
				aclFile = local(f[1])
			case key == "appendonly" && len(f) == 2:
				cfg.AppendOnly = f[1] == "yes"
			case key == "appendfsync" && len(f) == 2:
				cfg.AppendFsync = f[1]
			case slices.Contains(valkeyIgnored, key):
			default:
				cfg.ExtraArgs = append(cfg.ExtraArgs, append([]string{"--" + key}, f[1:]...)...)
			}
		}
	}
	// The server's own arguments after the config file, with $(VAR) from
	// its env, as the kubelet expands them.
	e := &podEnv{m: m, w: w, c: c, pod: pod, ns: w.Metadata.Namespace, secrets: sec, volumes: volumes}
	defined := map[string]string{}
	for _, v := range c.Env {
		val, err := e.value(v, defined)
		if err != nil {
			return nil, cfg, err
		}
		defined[v.Name] = val
	}
	for _, a := range c.Args {
		if !strings.HasSuffix(a, ".conf") {
			cfg.ExtraArgs = append(cfg.ExtraArgs, expand(a, defined))
		}
	}
	// The init containers, run here with their env and local paths.
	for _, ic := range w.Spec.Template.Spec.InitContainers {
		ie := &podEnv{m: m, w: w, c: ic, pod: pod, ns: w.Metadata.Namespace, secrets: sec, volumes: volumes}
		env := map[string]string{}
		for _, v := range ic.Env {
			val, err := ie.value(v, env)
			if err != nil {
				return nil, cfg, err
			}
			env[v.Name] = val
		}
		argv := append(slices.Clone(ic.Command), ic.Args...)
		for i := range argv {
			argv[i] = local(argv[i])
		}
		if len(argv) == 0 {
			return nil, cfg, fmt.Errorf("prodshape: init container %s has no command", ic.Name)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for _, k := range sortedKeys(env) {
			cmd.Env = append(cmd.Env, k+"="+env[k])
		}
		// A script's paths in the container (${NAME:-/path} defaults,
		// as render-acl.sh's rules and ACL file) move to the local
		// volumes.
		rules := ""
		for name, def := range scriptPaths(argv) {
			if _, set := env[name]; !set && local(def) != def {
				cmd.Env = append(cmd.Env, name+"="+local(def))
				if strings.HasSuffix(def, "acl-rules") {
					rules = local(def)
				}
			}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, cfg, fmt.Errorf("prodshape: Valkey's init container %s: %w\n%s", ic.Name, err, out)
		}
		pod.Notes = append(pod.Notes, fmt.Sprintf("init container %s run here", ic.Name))
		// The user whose rules allow everything runs the launcher's
		// PING and SHUTDOWN; the script names its password NAME_PASSWORD.
		if cfg.AdminUser == "" {
			cfg.AdminUser, cfg.AdminPassword = adminUser(rules, env)
		}
	}
	if aclFile != "" {
		if _, err := os.Stat(aclFile); err != nil {
			return nil, cfg, fmt.Errorf("prodshape: Valkey's ACL file %s was not written: %w", aclFile, err)
		}
		cfg.ACLFile = aclFile
		if cfg.AdminUser == "" {
			return nil, cfg, fmt.Errorf("prodshape: Valkey's ACL rules name no user with +@all for the launcher")
		}
	}
	return pod, cfg, nil
}

var pathDefault = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*):-(/[^}]*)\}`)

// scriptPaths returns the ${NAME:-/path} defaults of the shell scripts a
// command runs.
func scriptPaths(argv []string) map[string]string {
	out := map[string]string{}
	for _, a := range argv {
		if !strings.HasSuffix(a, ".sh") {
			continue
		}
		b, err := os.ReadFile(a)
		if err != nil {
			continue
		}
		for _, m := range pathDefault.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = m[2]
		}
	}
	return out
}

// adminUser returns the first user of the ACL rules file whose rules
// include +@all, and its password from the init container's env.
func adminUser(rules string, env map[string]string) (user, password string) {
	b, err := os.ReadFile(rules)
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || !slices.Contains(f[1:], "+@all") {
			continue
		}
		return f[0], env[strings.ToUpper(strings.ReplaceAll(f[0], "-", "_"))+"_PASSWORD"]
	}
	return "", ""
}
