package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/peerpatch/peerpatch/pkg/api"
	"github.com/peerpatch/peerpatch/pkg/store"
	"github.com/peerpatch/peerpatch/pkg/trust"
)

// refresh refreshes the metadata of seeder i, enrolling first if the agent has no credential
// from it, and once more if the seeder no longer knows the credential (its state was lost).
func (a *Agent) refresh(ctx context.Context, i int, c *trust.Client) error {
	seeder := a.cfg.Seeders[i]
	for attempt := 0; ; attempt++ {
		if a.getString(keyCredential+seeder) == "" {
			if err := a.enroll(ctx, seeder); err != nil {
				return err
			}
		}
		err := c.Refresh()
		switch {
		case errors.Is(err, trust.ErrUnauthorized) && attempt == 0:
			a.log.Warn("seeder does not know this agent's credential; enrolling again", "seeder", seeder)
			if err := a.db.Delete(store.State, keyCredential+seeder); err != nil {
				return err
			}
			continue
		case errors.Is(err, trust.ErrForbidden):
			return fmt.Errorf("this agent (%s) was revoked: %w", a.id, err)
		}
		return err
	}
}

// enroll trades the fleet enrolment token for this agent's own credential from seeder.
func (a *Agent) enroll(ctx context.Context, seeder string) error {
	body, _ := json.Marshal(api.Enroll{ID: a.id, Hostname: a.hostname})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, seeder+api.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", a.token.Bearer())
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: a.base, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("enrol: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return fmt.Errorf("enrol: the seeder refused the agent token in %s: %s", a.cfg.TokenFile, api.ErrorText(resp.StatusCode, b))
	default:
		return fmt.Errorf("enrol: %s", api.ErrorText(resp.StatusCode, b))
	}
	var e api.Enrolled
	if err := json.Unmarshal(b, &e); err != nil || !strings.HasPrefix(e.Credential, a.id+".") {
		return fmt.Errorf("enrol: malformed answer from %s", seeder)
	}
	if err := a.db.Put(store.State, keyCredential+seeder, e.Credential); err != nil {
		return err
	}
	a.auth.SetToken(seeder, e.Credential)
	a.log.Info("enrolled", "seeder", seeder, "id", a.id)
	return nil
}
