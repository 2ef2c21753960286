// Package consumers evaluates BatchCertPool objects the way the tools our users run read them,
// with those tools' own libraries:
//
//   - kstatus: sigs.k8s.io/cli-utils status.Compute (Flux `wait: true` without healthCheckExprs,
//     kpt, cli-utils apply, `kubectl wait`-style gates built on it);
//   - Argo CD: gitops-engine's health.GetResourceHealth with a health override that runs our Lua
//     the way argo-cd's util/lua does (see argocdLua);
//   - Flux: fluxcd/pkg/runtime/cel's StatusReader, what kustomize-controller builds from the
//     healthCheckExprs in deploy/gitops/flux/kustomizations.yaml.
//
// The cases (objects and the verdict each tool must give) are written by tests/consumers/ from the
// operator's reason registry and from statuses captured in real operator runs; the file is named
// by BATCHCERT_CONSUMER_CASES. Every verdict is also written to the file named by "results" in
// it, so the Python side can check that every case ran and render the README table.
package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/gitops-engine/pkg/health"
	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// Verdict is one tool's reading of one object.
type Verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

// Case is one object and what each tool must say about it (an empty expectation is not checked).
type Case struct {
	Name     string            `json:"name"`
	Object   json.RawMessage   `json:"object"`
	Expect   map[string]string `json:"expect"`
	Contains map[string]string `json:"messageContains"`
}

// Input is the file tests/consumers writes.
type Input struct {
	Lua     string `json:"lua"`     // deploy/gitops/argocd/health.lua
	Flux    string `json:"flux"`    // deploy/gitops/flux/kustomizations.yaml
	Results string `json:"results"` // where to write every verdict
	Cases   []Case `json:"cases"`
}

func loadInput(t *testing.T) Input {
	t.Helper()
	path := os.Getenv("BATCHCERT_CONSUMER_CASES")
	if path == "" {
		t.Fatal("BATCHCERT_CONSUMER_CASES is not set: run this through tests/consumers (pytest)")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var input Input
	if err := json.Unmarshal(raw, &input); err != nil {
		t.Fatal(err)
	}
	if len(input.Cases) == 0 {
		t.Fatal("no cases")
	}
	return input
}

// kstatusVerdict is what every kstatus consumer computes.
func kstatusVerdict(u *unstructured.Unstructured) Verdict {
	result, err := status.Compute(u)
	if err != nil {
		return Verdict{Status: "Error", Error: err.Error()}
	}
	return Verdict{Status: string(result.Status), Message: result.Message}
}

// argocdLua runs a health script as argo-cd's util/lua VM does (runLua/ExecuteHealthLua): a
// state with no standard libraries, then only package, base, table and argo-cd's "safe" os
// (os.time and os.date, registered the way OpenSafeOs registers them, and preloaded for
// require("os")); a one-second deadline; the object as the global `obj`, decoded as decodeValue
// does; the returned table JSON-encoded by gopher-json and checked against the valid codes.
// argo-cd itself is not imported: its module pins Kubernetes through replace directives and
// pulls in the whole application controller. No `string` or `math` library is open, so a
// script that calls string.format works under lupa and fails in Argo CD: this catches that.
type argocdLua struct{ script string }

var safeOsFuncs = map[string]lua.LGFunction{
	"time": func(l *lua.LState) int { l.Push(lua.LNumber(time.Now().Unix())); return 1 },
	"date": func(l *lua.LState) int { l.Push(lua.LString(time.Now().UTC().Format(time.RFC3339))); return 1 },
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs)) // sic: argo-cd registers them on "table"
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []interface{}:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func (a argocdLua) GetResourceHealth(obj *unstructured.Unstructured) (*health.HealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(a.script); err != nil {
		return nil, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	verdict := &health.HealthStatus{}
	if err := json.Unmarshal(encoded, verdict); err != nil {
		return nil, err
	}
	switch verdict.Status {
	case health.HealthStatusUnknown, health.HealthStatusProgressing, health.HealthStatusSuspended,
		health.HealthStatusHealthy, health.HealthStatusDegraded, health.HealthStatusMissing:
		return verdict, nil
	}
	return &health.HealthStatus{Status: health.HealthStatusUnknown, Message: "Lua returned an invalid health status"}, nil
}

func argocdVerdict(u *unstructured.Unstructured, override health.HealthOverride) Verdict {
	result, err := health.GetResourceHealth(u, override)
	verdict := Verdict{}
	if result != nil {
		verdict.Status, verdict.Message = string(result.Status), result.Message
	}
	if err != nil {
		verdict.Error = err.Error()
	}
	return verdict
}

// fluxReader builds the StatusReader kustomize-controller builds from our healthCheckExprs.
func fluxReader(t *testing.T, path string) func(context.Context, *unstructured.Unstructured) Verdict {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var checks []kustomize.CustomHealthCheck
	for _, doc := range strings.Split(string(raw), "\n---") {
		var k struct {
			Kind string `json:"kind"`
			Spec struct {
				HealthCheckExprs []kustomize.CustomHealthCheck `json:"healthCheckExprs"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &k); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if k.Kind == "Kustomization" {
			checks = append(checks, k.Spec.HealthCheckExprs...)
		}
	}
	if len(checks) != 1 || checks[0].Kind != "BatchCertPool" {
		t.Fatalf("%s: want exactly one healthCheckExprs entry, for BatchCertPool; got %+v", path, checks)
	}
	newReader, err := fluxcel.NewStatusReader(checks)
	if err != nil {
		t.Fatalf("kustomize-controller would refuse these expressions: %v", err)
	}
	reader := newReader(nil)
	return func(ctx context.Context, u *unstructured.Unstructured) Verdict {
		result, err := reader.ReadStatusForObject(ctx, nil, u)
		if err != nil {
			return Verdict{Status: "Error", Error: err.Error()}
		}
		verdict := Verdict{Status: string(result.Status), Message: result.Message}
		if result.Error != nil {
			verdict.Error = result.Error.Error()
		}
		return verdict
	}
}

func TestConsumersReadEveryState(t *testing.T) {
	input := loadInput(t)
	script, err := os.ReadFile(input.Lua)
	if err != nil {
		t.Fatal(err)
	}
	argo := argocdLua{script: string(script)}
	flux := fluxReader(t, input.Flux)
	results := map[string]map[string]Verdict{}
	for _, c := range input.Cases {
		// Decoded as client-go decodes what the API server sends (integers as int64).
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(c.Object); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		got := map[string]Verdict{
			"kstatus": kstatusVerdict(u.DeepCopy()),
			"argocd":  argocdVerdict(u.DeepCopy(), argo),
			"flux":    flux(context.Background(), u.DeepCopy()),
		}
		results[c.Name] = got
		t.Run(c.Name, func(t *testing.T) {
			for _, tool := range []string{"kstatus", "argocd", "flux"} {
				verdict := got[tool]
				if want, ok := c.Expect[tool]; ok && verdict.Status != want {
					t.Errorf("%s: %s (%q, error %q), want %s", tool, verdict.Status, verdict.Message, verdict.Error, want)
				}
				if part, ok := c.Contains[tool]; ok && !strings.Contains(verdict.Message, part) {
					t.Errorf("%s: message %q does not mention %q", tool, verdict.Message, part)
				}
			}
		})
	}
	if input.Results != "" {
		encoded, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(input.Results, encoded, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
