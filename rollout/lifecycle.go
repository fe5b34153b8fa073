package rollout

import (
	"errors"
	"fmt"
)

// ErrEnded reports an operator command that the rollout's state leaves
// nothing to do: halt of a rollout that is done, resume of one that
// halted or was revoked.
var ErrEnded = errors.New("the rollout's state refuses this command")

// CheckCommand says whether an operator command still means something
// for a rollout judged st, before it is signed and wherever it arrives.
// A rollout ends done, halted (and rolled back, when the plan or a
// revoke says so) or revoked:
//
//   - halt of a done rollout is refused: every stage passed and every
//     host keeps the fix; a halt would only keep hosts that join later
//     from applying it, which is revoke's business, and would show a
//     finished rollout as halted.
//   - resume of a halted or revoked rollout is refused: a halt is final,
//     and resume only undoes a pause.
//
// Everything else is left to the fold of the commands (Rollout.AddCommand).
func CheckCommand(st Status, action string) error {
	switch {
	case action == ActionHalt && st.State == Done:
		return fmt.Errorf("%w: rollout %s is done: every stage passed and its hosts keep the patch; halt stops a running rollout. "+
			"To take the patch off every host, revoke it", ErrEnded, st.ID)
	case (action == ActionPause || action == ActionResume || action == ActionPromote) && st.State == Done:
		return fmt.Errorf("%w: rollout %s is done: every stage passed and it stays done; there is nothing to %s. "+
			"To take the patch off every host, revoke it", ErrEnded, st.ID, action)
	case action == ActionResume && Ended(st.State):
		return fmt.Errorf("%w: rollout %s %s; a halt is final and resume only undoes a pause. "+
			"To roll the bundle out again, publish a new plan with a new id", ErrEnded, st.ID, st.Why)
	}
	return nil
}

// PromoteNote is what to tell the operator about a promote accepted by a
// rollout judged st: a paused rollout opens the stage when it resumes.
func PromoteNote(st Status) string {
	if st.State == Paused {
		return "the rollout is paused: the promote takes effect at resume"
	}
	return ""
}
