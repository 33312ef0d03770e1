package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// Rotate rotates role's key (root, targets, snapshot or timestamp) in the deployment keysDir:
// it reads the seeder's current root and targets, makes the new key and root version N+1
// (trust.RotateKey), and posts them to the seeder. Once the seeder accepts, keysDir/root.json
// becomes the new root; if it refuses, the old key is put back.
func (c *Client) Rotate(ctx context.Context, keysDir, role string) (*trust.Rotation, error) {
	root, err := c.get(ctx, api.PathTUF+"root.json")
	if err != nil {
		return nil, fmt.Errorf("read current root: %w", err)
	}
	targets, err := c.get(ctx, api.PathTUF+"targets.json")
	if err != nil {
		return nil, fmt.Errorf("read current targets: %w", err)
	}
	rot, err := trust.RotateKey(keysDir, role, root, targets, time.Now())
	if err != nil {
		return nil, err
	}
	if err := c.postRotation(ctx, rot); err != nil {
		return nil, errors.Join(err, rot.Abort())
	}
	if err := rot.Commit(); err != nil {
		return nil, fmt.Errorf("the seeder installed root version %d, but: %w", rot.Version, err)
	}
	return rot, nil
}

func (c *Client) postRotation(ctx context.Context, rot *trust.Rotation) error {
	body, err := json.Marshal(api.RotateRequest{Root: rot.Root, Targets: rot.Targets})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+api.PathRotate, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", c.base+api.PathRotate, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return c.refusal(resp.StatusCode, b)
	}
	return nil
}

// Delegate delegates the target path patterns paths to a new role name with its own key
// (keysDir/keys/<name>.pem, made here): it signs the seeder's current targets with the
// delegation added (trust.Delegate) and posts them with the role's first metadata. If the
// seeder refuses, the new key is removed.
func (c *Client) Delegate(ctx context.Context, keysDir, name string, paths []string) (*trust.Delegation, error) {
	targets, err := c.get(ctx, api.PathTUF+"targets.json")
	if err != nil {
		return nil, fmt.Errorf("read current targets: %w", err)
	}
	del, err := trust.Delegate(keysDir, targets, name, paths, time.Now())
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(api.DelegateRequest{Role: name, Targets: del.Targets, RoleMeta: del.Role})
	if err == nil {
		err = c.post(ctx, api.PathDelegate, body)
	}
	if err != nil {
		return nil, errors.Join(err, os.Remove(del.KeyFile))
	}
	return del, nil
}

func (c *Client) post(ctx context.Context, p string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+p, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", c.base+p, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return c.refusal(resp.StatusCode, b)
	}
	return nil
}
