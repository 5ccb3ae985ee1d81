package kafka

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"blackfriday.local/tooling/stack/apt"
	"blackfriday.local/tooling/stack/process"
)

// pom resolves org.apache.kafka:kafka_2.13 and a log4j2 binding from Maven
// Central; log4jConfig sends the broker's log to kafka.log in its node's
// directory.
var (
	//go:embed pom.xml
	pom []byte
	//go:embed log4j2.xml
	log4jConfig []byte
)

// DefaultVersion is the Apache Kafka version the pom pins.
func DefaultVersion() string {
	m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom)
	if m == nil {
		panic("kafka: pom.xml pins no <kafka.version>")
	}
	return string(m[1])
}

// DefaultCacheDir is where the jars are kept between runs:
// $XDG_CACHE_HOME/blackfriday, else ~/.cache/blackfriday.
func DefaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "blackfriday")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "blackfriday-cache")
	}
	return filepath.Join(home, ".cache", "blackfriday")
}

// jars returns the directory holding every jar of Apache Kafka version,
// downloading them with Maven the first time. A marker holds the pom's hash,
// so that a changed pom downloads again; a lock lets concurrent starts (two
// clones, two test runs) download once.
func jars(ctx context.Context, log io.Writer, cacheDir, version string) (string, error) {
	sum := sha256.Sum256(pom)
	want := hex.EncodeToString(sum[:])
	dir := filepath.Join(cacheDir, "kafka-"+version)
	libs, marker := filepath.Join(dir, "libs"), filepath.Join(dir, ".complete")
	complete := func() bool {
		b, err := os.ReadFile(marker)
		return err == nil && strings.TrimSpace(string(b)) == want
	}
	if complete() {
		return libs, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete() {
		return libs, nil
	}
	if err := ensureTools(ctx, log, true); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "kafka: downloading the Apache Kafka %s jars from Maven Central into %s (once)\n", version, libs)
	pomFile := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pomFile, pom, 0o644); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "libs.tmp.")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	mvnLog := filepath.Join(dir, "mvn.log")
	out, err := os.Create(mvnLog)
	if err != nil {
		return "", err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, "mvn", "-B", "-Dstyle.color=never", "-f", pomFile, "-Dkafka.version="+version,
		"dependency:copy-dependencies", "-DoutputDirectory="+tmp)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("maven could not resolve org.apache.kafka:kafka_2.13:%s: %w%s", version, err, process.Tail(40, mvnLog))
	}
	if found, _ := filepath.Glob(filepath.Join(tmp, "kafka_2.13-*.jar")); len(found) == 0 {
		return "", fmt.Errorf("no kafka_2.13 jar after the download (see %s)", mvnLog)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	_ = os.Remove(marker)
	if err := os.RemoveAll(libs); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, libs); err != nil {
		return "", err
	}
	return libs, os.WriteFile(marker, []byte(want+"\n"), 0o644)
}

// lock takes an exclusive lock on path, waiting for it, and returns what
// releases it.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// ensureTools makes sure Java 17 or newer (Kafka 4 needs it) is on PATH,
// and Maven when maven is set, installing Debian's when missing and root.
func ensureTools(ctx context.Context, log io.Writer, maven bool) error {
	var missing []string
	if _, err := exec.LookPath("java"); err != nil {
		missing = append(missing, "openjdk-17-jre-headless")
	}
	if _, err := exec.LookPath("mvn"); err != nil && maven {
		missing = append(missing, "maven")
	}
	if len(missing) > 0 {
		err := apt.Install(ctx, log, "kafka: the broker needs Java and Maven", missing...)
		if errors.Is(err, apt.ErrNotRoot) {
			return fmt.Errorf("missing %s: install a Java 17+ runtime and Maven", strings.Join(missing, " "))
		}
		if err != nil {
			return err
		}
	}
	return checkJava(ctx)
}

// checkJava fails unless java is version 17 or newer.
func checkJava(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "java", "-XshowSettings:properties", "-version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("java -version: %w\n%s", err, out)
	}
	m := regexp.MustCompile(`java\.specification\.version = (\d+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("cannot tell the Java version from java -XshowSettings:properties")
	}
	if v, _ := strconv.Atoi(string(m[1])); v < 17 {
		return fmt.Errorf("java %d found; Apache Kafka 4 needs Java 17 or newer", v)
	}
	return nil
}
