// Command argo-health runs an Argo CD resource health script (Lua) against each object read from stdin
// (JSON or YAML stream), in the runtime Argo CD uses (github.com/yuin/gopher-lua) and set up the way
// Argo CD's util/lua package sets it up:
//
//   - the state is created without the standard libraries (argocd-cm scripts run that way unless
//     `resource.customizations.useOpenLibs.<group_Kind>: "true"`; pass -open-libs for that mode), then the
//     package, base and table libraries are opened, plus Argo CD's "safe os" (only time and date). Argo CD
//     registers that module under the name "table", which gopher-lua's RegisterModule leaves alone as
//     "table" is loaded already, so in effect scripts reach time and date only through `require("os")`
//     (and there is no global `os`, `string` or `math` without open libs) - mirrored here by the same calls;
//   - the object is the global `obj`, converted like Argo CD converts an unstructured object: maps and
//     arrays become tables (nil array items are dropped by Append), int64/float64 become numbers,
//     json.Number becomes a string, bools stay bools;
//   - the script runs with a 1 s deadline; its last return value must be a table, which is encoded to
//     JSON and decoded into {status, message}; a status outside Argo CD's health codes becomes
//     Unknown / "Lua returned an invalid health status".
//
// Argo CD itself reports an object with a deletionTimestamp as Progressing / "Pending deletion" before
// any script runs (gitops-engine's GetResourceHealth); this command only runs the script.
//
// Output: one JSON line per object, {"status": ..., "message": ...}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dynatrace-apitoken-operator/tools/gitops/cmd/internal/stream"
)

const (
	scriptTimeout       = time.Second
	invalidHealthStatus = "Lua returned an invalid health status"
)

// The health codes of gitops-engine's pkg/health.
var healthCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	scriptPath := flag.String("script", "", "the Lua health script (required)")
	openLibs := flag.Bool("open-libs", false, "open the standard Lua libraries (Argo CD's useOpenLibs)")
	flag.Parse()
	if *scriptPath == "" {
		fmt.Fprintln(os.Stderr, "usage: argo-health -script health.lua [-open-libs] < objects")
		os.Exit(2)
	}
	script, err := os.ReadFile(*scriptPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	stream.Main(func(object *unstructured.Unstructured) (stream.Verdict, error) {
		status, message, err := health(object, string(script), *openLibs)
		if err != nil {
			// gitops-engine turns a script error into Unknown with the error as message.
			return stream.Verdict{Status: "Unknown", Message: err.Error()}, err
		}
		return stream.Verdict{Status: status, Message: message}, nil
	})
}

func health(object *unstructured.Unstructured, script string, openLibs bool) (string, string, error) {
	state := newState(openLibs)
	defer state.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, object.Object))
	if err := state.DoString(script); err != nil {
		return "", "", err
	}
	returned := state.Get(-1)
	if returned.Type() != lua.LTTable {
		return "", "", fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	encoded, err := json.Marshal(fromLua(returned, map[*lua.LTable]bool{}))
	if err != nil {
		return "", "", err
	}
	var result struct {
		Status  string `json:"status,omitempty"`
		Message string `json:"message,omitempty"`
	}
	if err := json.Unmarshal(encoded, &result); err != nil {
		return "", "", err
	}
	if !healthCodes[result.Status] {
		return "Unknown", invalidHealthStatus, nil
	}
	return result.Status, result.Message, nil
}

func newState(openLibs bool) *lua.LState {
	state := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	safeOs := safeOsFunctions()
	openSafeOs := func(l *lua.LState) int {
		l.Push(l.RegisterModule(lua.TabLibName, safeOs)) // sic, as Argo CD: a no-op, "table" exists
		return 1
	}
	for _, library := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		call := lua.P{Fn: state.NewFunction(library.open), NRet: 0, Protect: true}
		if err := state.CallByParam(call, lua.LString(library.name)); err != nil {
			panic(err)
		}
	}
	state.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOs))
		return 1
	})
	return state
}

// safeOsFunctions takes os.time and os.date from gopher-lua's own os library (Argo CD's safe os is a
// copy of those two), leaving out everything that touches the process or the file system.
func safeOsFunctions() map[string]lua.LGFunction {
	scratch := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer scratch.Close()
	scratch.Push(scratch.NewFunction(lua.OpenOs))
	scratch.Push(lua.LString(lua.OsLibName))
	scratch.Call(1, 1)
	module := scratch.Get(-1).(*lua.LTable)
	functions := map[string]lua.LGFunction{}
	for _, name := range []string{"time", "date"} {
		functions[name] = module.RawGetString(name).(*lua.LFunction).GFunction
	}
	return functions
}

// toLua converts a value of an unstructured object into a Lua value, with the semantics of Argo CD's
// decodeValue.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		table := state.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case map[string]any:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(state, item))
		}
		return table
	default:
		return lua.LNil
	}
}

// fromLua converts the script's result for JSON encoding, as gopher-json (used by Argo CD) does: a table
// whose keys are 1..n in order is an array, any other table an object; an empty table is null; a table
// that contains itself cannot be encoded.
func fromLua(value lua.LValue, visited map[*lua.LTable]bool) any {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if visited[v] {
			return unsupported{"recursively nested table"}
		}
		visited[v] = true
		var array []any
		var object map[string]any
		v.ForEach(func(key, item lua.LValue) {
			if index, isNumber := key.(lua.LNumber); isNumber && object == nil && int(index) == len(array)+1 {
				array = append(array, fromLua(item, visited))
				return
			}
			if object == nil {
				object = make(map[string]any, len(array)+1)
				for i, earlier := range array {
					object[strconv.Itoa(i+1)] = earlier
				}
			}
			object[key.String()] = fromLua(item, visited)
		})
		if object != nil {
			return object
		}
		return array
	case *lua.LNilType:
		return nil
	default:
		return unsupported{value.Type().String()}
	}
}

// unsupported makes json.Marshal fail on functions, userdata and the like, as gopher-json does.
type unsupported struct{ kind string }

func (u unsupported) MarshalJSON() ([]byte, error) {
	return nil, errors.New("cannot encode " + u.kind + " to JSON")
}
