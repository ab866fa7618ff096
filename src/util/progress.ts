/** Reports one line per slow step (kernel build, runtime image build, snapshot). */
export type Progress = (message: string) => void;
export const silent: Progress = () => {};
