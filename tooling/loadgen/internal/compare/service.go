package compare

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"blackfriday.local/tooling/stack/process"
)

// service is a binary the comparison runs (an api or the aggregator), its
// output in its own log in the work directory.
type service struct {
	*process.Proc
	log *os.File
}

// startService runs bin with env added to the environment, logging to
// dir/name.log.
func startService(name, bin, dir string, env []string) (*service, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := process.Start(name, cmd)
	if err != nil {
		logf.Close()
		return nil, err
	}
	return &service{Proc: p, log: logf}, nil
}

// waitHTTP waits until url answers 200; the error names the log.
func (s *service) waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	if err := s.WaitHTTP(ctx, url, timeout); err != nil {
		return fmt.Errorf("%w (see %s)", err, s.log.Name())
	}
	return nil
}

// stop sends SIGTERM and waits, killing the service after timeout.
func (s *service) stop(timeout time.Duration) error {
	defer s.log.Close()
	return s.Stop(timeout)
}
